"""The thesis joint model: 8 stacks, image -> 16 joint heatmaps, batch 4, Adam.

  python -m launch.train --config=configs/joint.py --workdir=/tmp/joint \
      --config.input.name=mpii_trb/thesis_joints --config.input.manual_dir=DIR

Variants: `--config=configs/joint.py:stacks=2` picks the number of stacks.
"""

from configs import common


def get_config(arg: str | None = None):
  return common.thesis_config(target="joints", num_stacks=8, arg=arg)
