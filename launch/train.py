r"""Trains a joint or triplet model; resumes from the newest checkpoint in --workdir.

  python -m launch.train --config=configs/joint.py --workdir=/tmp/joint \
      --config.num_train_steps=1000

Every config field can be overridden: --config.optimizer.learning_rate=5e-4.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Training configuration (configs/*.py).", lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory for checkpoints, logs and TensorBoard.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from triplet_pose import metric_writer  # pylint: disable=g-import-not-at-top
  from triplet_pose import train  # pylint: disable=g-import-not-at-top
  metric_writer.quiet_library_logs()
  train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
