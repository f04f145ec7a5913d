r"""Which pose representation can a prosthesis user read? The observer benchmark.

  python -m launch.readability --workdir=/tmp/readability [--quick]
  python -m launch.readability --scenes --workdir=/tmp/readability [--quick]
  python -m launch.readability --workdir=/tmp/readability \
      --joint_workdir=/tmp/triplet_pose_demo/joint \
      --triplet_workdir=/tmp/triplet_pose_demo/triplet

Scores readers of phosphene images under two protocols (a fresh reader per
representation and phosphene count; one frozen common reader of every
drawn representation), 3 seeds per cell with bootstrap CIs and paired
tests, the implant budget and pictoriality of every representation, and
writes WORKDIR/results.json, runs.json, table.txt, pckh_vs_phosphenes.png
and examples.png (triplet_pose/readability). With the pose models'
workdirs it also measures the images of their predicted poses.
Re-running resumes: finished readers are kept. `--config` takes
configs/readability.py (see there); without it, the full grid, or the
quick one with --quick.

With --scenes it runs the scenes of several people instead
(`readability/scenes.py`): an associative-embedding reader per
representation, N and seed must find every person; it writes
WORKDIR/scenes_results.json and scenes_runs.json, and the scenes section
of table.txt (beside the single-person tables, when the workdir has them).
"""

import pathlib

from absl import app
from absl import flags
from ml_collections import config_flags

from configs import readability as readability_configs
from launch import common
from triplet_pose.readability import benchmark
from triplet_pose.readability import outputs
from triplet_pose.readability import scenes
from triplet_pose.readability import scenes_tables
from triplet_pose.readability import tables

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "configs/readability.py[:size=quick]; default: the full grid.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder (results, table, figures).")
_QUICK = flags.DEFINE_bool("quick", False, "4 representations x 2 N x 3 seeds, both protocols, "
                           "small readers (minutes on 2 cores).")
_JOINT_WORKDIR = flags.DEFINE_string("joint_workdir", None,
                                     "Trained joint model, for the predicted-pose rows.")
_TRIPLET_WORKDIR = flags.DEFINE_string("triplet_workdir", None,
                                       "Trained triplet model (with --joint_workdir).")
_SCENES = flags.DEFINE_bool("scenes", False, "Scenes of several people: every person's joints "
                            "(multi-person AP) and their count, per representation and N.")
flags.mark_flag_as_required("workdir")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _CONFIG.value is not None and _QUICK.value:
    raise app.UsageError("give --config=configs/readability.py:size=quick or --quick, not both")
  if _TRIPLET_WORKDIR.value and not _JOINT_WORKDIR.value:
    raise app.UsageError("--triplet_workdir needs --joint_workdir")
  if _SCENES.value:
    _run_scenes()
    return
  if _CONFIG.value is not None and _CONFIG.value.get("scenes"):
    raise app.UsageError("this is a scenes config: add --scenes")
  config = _CONFIG.value or readability_configs.get_config("size=quick" if _QUICK.value else None)
  results = benchmark.run_benchmark(config, _WORKDIR.value, joint_workdir=_JOINT_WORKDIR.value,
                                    triplet_workdir=_TRIPLET_WORKDIR.value)
  paths = outputs.write_outputs(results, _WORKDIR.value)
  print(tables.format_tables(results))
  print("\n".join(f"{name}: {path}" for name, path in paths.items()))


def _run_scenes():
  """The scenes grid: scenes_results.json and the scenes section of table.txt."""
  if _JOINT_WORKDIR.value:
    raise app.UsageError("--scenes reads the true persons only: no --joint_workdir")
  config = _CONFIG.value
  if config is not None and not config.get("scenes"):
    raise app.UsageError("--scenes needs a scenes config: "
                         "--config=configs/readability.py:size=quick,scenes=True")
  size = "quick" if _QUICK.value else "full"
  config = config or readability_configs.get_config(f"size={size},scenes=True")
  results = scenes.run_scenes(config, _WORKDIR.value)
  path = outputs.write_table(_WORKDIR.value)
  print(scenes_tables.format_scenes(results))
  print(f"scenes_results: {pathlib.Path(_WORKDIR.value) / outputs.SCENES_RESULTS_FILE}\n"
        f"table: {path}")


if __name__ == "__main__":
  common.run(main, uses_tensorflow=False)
