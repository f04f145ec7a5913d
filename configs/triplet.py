"""The thesis triplet model: 5 stacks, image + 16 joint heatmaps (19 channels)
-> 26 contour-point heatmaps.

  python -m launch.train --config=configs/triplet.py --workdir=/tmp/triplet \
      --config.input.name=mpii_trb/thesis_triplets --config.input.manual_dir=DIR

Feed it predicted joints with `--config.triplet_input=predicted
--config.joint_workdir=/tmp/joint`.
"""

from configs import common


def get_config(arg: str | None = None):
  c = common.base_config()
  c.model.num_stacks = 5
  c.model.target = "contour"
  c.input.batch_size = 4
  c.input.name = "synthetic_figures"
  for key, value in common.parse_arg(arg).items():
    if key == "stacks":
      c.model.num_stacks = int(value)
    else:
      raise ValueError(f"unknown config argument {key!r} in {arg!r}")
  return c
