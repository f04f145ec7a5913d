"""The thesis joint model: 8 stacks, image -> 16 joint heatmaps, batch 4, Adam.

  python -m launch.train --config=configs/joint.py --workdir=/tmp/joint \
      --config.input.name=mpii_trb/thesis_joints --config.input.manual_dir=DIR

Variants: `--config=configs/joint.py:stacks=2` picks the number of stacks.
"""

from configs import common


def get_config(arg: str | None = None):
  c = common.base_config()
  c.model.num_stacks = 8
  c.model.target = "joints"
  c.input.batch_size = 4
  c.input.name = "synthetic_figures"
  for key, value in common.parse_arg(arg).items():
    if key == "stacks":
      c.model.num_stacks = int(value)
    else:
      raise ValueError(f"unknown config argument {key!r} in {arg!r}")
  return c

