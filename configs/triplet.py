"""The thesis triplet model: 5 stacks, image + 16 joint heatmaps (19 channels)
-> 26 contour-point heatmaps.

  python -m launch.train --config=configs/triplet.py --workdir=/tmp/triplet \
      --config.input.name=mpii_trb/thesis_triplets --config.input.manual_dir=DIR

Feed it predicted joints with `--config.triplet_input=predicted
--config.joint_workdir=/tmp/joint`. Variants: `:stacks=N`.
"""

from configs import common
from triplet_pose import config as config_lib


def get_config(arg: str | None = None):
  args = config_lib.parse_arg(arg, stacks=5)
  return common.thesis_config(target="contour", num_stacks=args.stacks)
