"""A tiny model on the fake input, for tests and a first look (seconds on a CPU).

  python -m launch.train --config=configs/tiny.py --workdir=/tmp/tiny

`--config=configs/tiny.py:target=contour` gives the tiny triplet model.
"""

from triplet_pose import config as config_lib


def get_config(arg: str | None = None):
  args = config_lib.parse_arg(arg, target="joints", stacks=2)
  c = config_lib.base_config()
  c.model.update(num_stacks=args.stacks, target=args.target, num_features=32,
                 hourglass_depth=2)
  c.input.update(name="fake", image_size=64, heatmap_size=16, batch_size=4,
                 eval_batch_size=4, fake_num_examples=32)
  c.optimizer.learning_rate = 1e-3
  c.update(num_train_steps=20, log_every_steps=5, eval_every_steps=10, eval_batches=2,
           checkpoint_every_steps=10)
  return c
