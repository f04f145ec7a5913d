r"""The main job: image -> pose -> phosphenes, end to end on synthetic figures.

  python -m launch.demo --workdir=/tmp/triplet_pose_demo [--quick]
  python -m launch.demo --scenes --workdir=/tmp/triplet_pose_demo [--quick]

Builds the synthetic dataset, trains a small joint model and a small triplet
model (fed with the joint model's predictions), evaluates both, renders
phosphenes and writes WORKDIR/report.html. With --scenes, the several-people
demo instead: synthetic scenes, an associative-embedding model in
WORKDIR/scenes, the multi-person AP (occlusion and crowd bins), scene panels
and WORKDIR/scenes_report.html. Re-running resumes.
"""

import json

from absl import app
from absl import flags

from configs import demo as demo_configs
from configs import scenes as scenes_configs
from launch import common
from triplet_pose import demo
from triplet_pose import scenes_demo

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for data, checkpoints and the report.")
_QUICK = flags.DEFINE_bool("quick", False, "A short run (a few minutes on a CPU).")
_SMOKE = flags.DEFINE_bool("smoke", False, "Seconds of training: checks the pipeline only.")
_PANELS = flags.DEFINE_integer("panels", None,
                               "Validation examples shown in the report (default 4; "
                               "held-out scenes with --scenes, default 3).")
_SCENES = flags.DEFINE_bool("scenes", False,
                            "The several-people demo (configs/scenes.py) instead.")
_TRIPLET = flags.DEFINE_string("triplet_workdir", None,
                               "With --scenes: a trained triplet model, for every "
                               "person's contour in the scene panel.")
flags.mark_flag_as_required("workdir")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _TRIPLET.value and not _SCENES.value:
    raise app.UsageError("--triplet_workdir needs --scenes")
  size = "smoke" if _SMOKE.value else "quick" if _QUICK.value else "full"
  if _SCENES.value:
    summary = scenes_demo.run_scenes_demo(
        _WORKDIR.value, scenes_configs.get_config(None if size == "full" else size),
        size=size, num_panels=3 if _PANELS.value is None else _PANELS.value,
        triplet_workdir=_TRIPLET.value)
  else:
    variant = "" if size == "full" else f",{size}"
    summary = demo.run_demo(_WORKDIR.value, demo_configs.get_config("joint" + variant),
                            demo_configs.get_config("triplet" + variant), size=size,
                            num_panels=4 if _PANELS.value is None else _PANELS.value)
  print(json.dumps(summary, indent=2))


if __name__ == "__main__":
  common.run(main)
