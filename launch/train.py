r"""Trains a joint or triplet model; resumes from the newest checkpoint in --workdir.

  python -m launch.train --config=configs/joint.py --workdir=/tmp/joint \
      --config.num_train_steps=1000

Every config field can be overridden: --config.optimizer.learning_rate=5e-4.
With --coordinator_address/--num_processes/--process_id (launch/distributed.py)
each process of a multi-host job runs this command; see the README.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from launch import common
from launch import distributed
from triplet_pose import train

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Training configuration (configs/*.py).", lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory for checkpoints, logs and TensorBoard.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  distributed.initialize(auto_detect=_CONFIG.value.distributed)
  train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  common.run(main)
