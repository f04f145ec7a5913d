"""The thesis joint model: 8 stacks, image -> 16 joint heatmaps, batch 4, Adam.

  python -m launch.train --config=configs/joint.py --workdir=/tmp/joint \
      --config.input.name=mpii_trb/thesis_joints --config.input.manual_dir=DIR

Variants: `--config=configs/joint.py:stacks=2` picks the number of stacks.
"""

from configs import common
from triplet_pose import config as config_lib


def get_config(arg: str | None = None):
  args = config_lib.parse_arg(arg, stacks=8)
  return common.thesis_config(target="joints", num_stacks=args.stacks)
