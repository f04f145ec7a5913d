r"""One network for joints and contour points (the thesis's future work).

Joint stacks predict the 16 joint heatmaps; triplet stacks, fed with the image
and the network's own (upsampled) joint heatmaps, predict the 26 contour
points; the losses of all stacks are summed and everything trains end to end.

  python -m launch.train --config=configs/combined.py --workdir=/tmp/combined
  python -m launch.evaluate --workdir=/tmp/combined

Arguments: 'stacks=J' and 'triplet_stacks=T' (default 8 and 5, the two thesis
models together); 'demo' for the demo's scale (1 + 1 small stacks at 128 px,
the same data and budget as `configs/demo.py`), to compare with the two-model
pipeline of the demo.
"""

from configs import common
from configs import demo


def get_config(arg: str | None = None):
  args = common.parse_arg(arg)
  unknown = set(args) - {"stacks", "triplet_stacks", "demo", "quick"}
  if unknown:
    raise ValueError(f"unknown config arguments {sorted(unknown)} in {arg!r}")
  if "demo" in args:
    c = demo.get_config("combined" + (",quick" if "quick" in args else ""))
  else:
    c = common.thesis_config(target="combined", num_stacks=8, arg=None)
    c.model.triplet_stacks = 5
  if "stacks" in args:
    c.model.num_stacks = int(args["stacks"])
  if "triplet_stacks" in args:
    c.model.triplet_stacks = int(args["triplet_stacks"])
  return c
