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
from triplet_pose import config as config_lib


def get_config(arg: str | None = None):
  # stacks / triplet_stacks 0: the variant's own (8 + 5, or the demo's 1 + 1).
  args = config_lib.parse_arg(arg, stacks=0, triplet_stacks=0, demo=False, quick=False)
  if args.demo:
    c = demo.get_config("combined" + (",quick" if args.quick else ""))
  else:
    c = common.thesis_config(target="combined", num_stacks=8)
    c.model.triplet_stacks = 5
  c.model.num_stacks = args.stacks or c.model.num_stacks
  c.model.triplet_stacks = args.triplet_stacks or c.model.triplet_stacks
  return c
