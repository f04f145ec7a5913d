"""A tiny model on the fake input, for tests and a first look (seconds on a CPU).

  python -m launch.train --config=configs/tiny.py --workdir=/tmp/tiny

`--config=configs/tiny.py:target=contour` gives the tiny triplet model.
"""

from triplet_pose import config as config_lib


def get_config(arg: str | None = None):
  args = config_lib.parse_arg(arg, target="joints", stacks=2)
  c = config_lib.base_config()
  c.model.num_stacks = args.stacks
  c.model.target = args.target
  c.model.num_features = 32
  c.model.hourglass_depth = 2
  c.input.name = "fake"
  c.input.image_size = 64
  c.input.heatmap_size = 16
  c.input.batch_size = 4
  c.input.eval_batch_size = 4
  c.input.fake_num_examples = 32
  c.optimizer.learning_rate = 1e-3
  c.num_train_steps = 20
  c.log_every_steps = 5
  c.eval_every_steps = 10
  c.eval_batches = 2
  c.checkpoint_every_steps = 10
  return c
