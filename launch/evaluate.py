r"""Evaluates a trained model: PCKh, parameters and ms per image; table, metrics.json, curve.

  python -m launch.evaluate --workdir=/tmp/joint
  python -m launch.evaluate --workdir=/tmp/triplet --joint_workdir=/tmp/joint \
      --config=configs/triplet.py --config.input.name=mpii_trb/triplets
  python -m launch.evaluate --workdir=/tmp/combined
  python -m launch.evaluate --compare /tmp/joint/eval/2000 /tmp/joint_b

`--workdir` is the model evaluated (newest checkpoint, or --checkpoint_step).
For a triplet model, three settings are reported side by side: the joint
model of --joint_workdir (default: the triplet config's joint_workdir); the
triplet model fed with that model's predicted joints; the triplet model fed
with ground-truth joints. For a combined model (model.target='combined'),
its joints and its contour points. Every row also gives the parameters of
the network(s) it runs and their inference ms per image (jitted, after
warm-up, flip test as set, median of --timing_batches batches of the eval
batch size) and the phosphene-space error of its predictions (NMSE and
SSIM between the simulator's renderings of the predicted and the true
poses; --nophosphene_error skips it), so runs on different workdirs compare
side by side from their metrics.json. --config (optional) picks the data through its
`input` section (default: the workdir's own config.json); the models always
come from their workdirs. Writes WORKDIR/eval/<step>/{metrics.json,
pckh_curve.png,table.txt} and metrics.config.json (the data and options
evaluated and the models' configs, which the `provenance` block of
metrics.json hashes; the block also names the models' workdirs and steps,
the dataset's version, the code's git commit, the machine and the command).

`--compare A B` (results files or workdirs: their metrics.json,
eval/metrics.json or newest eval/<step>/metrics.json) evaluates nothing: it
prints one line per difference in data, config or code between the two
results' provenance, then their PCKh side by side. With --coordinator_address/--num_processes/
--process_id (launch/distributed.py) each process of a multi-host job reads
its share of the split, PCKh covers the whole split, and process 0 writes.
"""

import pathlib

import jax
from absl import app
from absl import flags
from ml_collections import config_flags

from launch import common
from launch import distributed
from triplet_pose import evaluation
from triplet_pose import results as results_lib

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config whose `input` section picks the evaluation data "
    "(default: the workdir's config.json).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir of the model evaluated.")
_COMPARE = flags.DEFINE_string(
    "compare", None, "Results file or workdir A; B follows as an argument "
    "(--compare A B): prints their provenance differences and PCKh side by side.")
_STEP = flags.DEFINE_integer("checkpoint_step", None, "Checkpoint step (default: newest).")
_JOINT_WORKDIR = flags.DEFINE_string(
    "joint_workdir", None, "For a triplet model: the joint model whose predicted "
    "joints feed it (default: the triplet config's joint_workdir).")
_JOINT_STEP = flags.DEFINE_integer("joint_checkpoint_step", None,
                                   "Checkpoint step of --joint_workdir (default: newest).")
_SPLIT = flags.DEFINE_string("split", None, "Split (default: config.input.eval_split).")
_NUM_BATCHES = flags.DEFINE_integer("num_batches", 0, "Stop after N batches (0: all).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 0,
                                   "Batch size (0: config.input.eval_batch_size).")
_FLIP_TEST = flags.DEFINE_bool("flip_test", True,
                               "Average heatmaps with those of the mirrored image.")
_TIMING_BATCHES = flags.DEFINE_integer(
    "timing_batches", 5, "Timed batches per setting for ms per image (0: no timing).")
_PHOSPHENE_ERROR = flags.DEFINE_bool(
    "phosphene_error", True, "Also report the phosphene-space error (NMSE, SSIM) "
    "between the renderings of the predicted and the true poses.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None,
                                  "Where to write (default: WORKDIR/eval/<step>).")


def main(argv):
  if _COMPARE.value is not None:
    if len(argv) != 2:
      raise app.UsageError(f"--compare takes two results: --compare A B (got "
                           f"{[_COMPARE.value, *argv[1:]]})")
    print(results_lib.compare(_COMPARE.value, argv[1]))
    return
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not _WORKDIR.value:
    raise app.UsageError("--workdir is required (or --compare A B)")
  distributed.initialize()
  options = evaluation.EvalOptions(
      split=_SPLIT.value, batch_size=_BATCH_SIZE.value or None,
      num_batches=_NUM_BATCHES.value or None, flip_test=_FLIP_TEST.value,
      timing_batches=_TIMING_BATCHES.value, phosphene_error=_PHOSPHENE_ERROR.value,
      progress=True)
  results = evaluation.evaluate_checkpoints(
      _WORKDIR.value, config=_CONFIG.value, joint_workdir=_JOINT_WORKDIR.value,
      step=_STEP.value, joint_step=_JOINT_STEP.value, options=options)
  if jax.process_index() != 0:  # every process of a multi-process job has the results
    return
  out_dir = _OUTPUT_DIR.value or pathlib.Path(_WORKDIR.value) / "eval" / str(results["step"])
  paths = results_lib.write_results(results, out_dir)
  print(results_lib.format_table(results))
  print(f"\nwrote {', '.join(str(p) for p in paths.values())}")


if __name__ == "__main__":
  common.run(main)
