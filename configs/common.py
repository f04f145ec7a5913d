"""The thesis setting shared by `configs/joint.py`, `triplet.py` and `combined.py`.

Every config section and its defaults live in the library
(`triplet_pose/config.py`); experiment files only compose and override them.
"""

import ml_collections

from triplet_pose import config as config_lib


def thesis_config(*, target: str, num_stacks: int) -> ml_collections.ConfigDict:
  """The thesis setting (batch 4, Adam, synthetic data unless overridden) for
  `target` with `num_stacks` stacks."""
  c = config_lib.base_config()
  c.model.num_stacks = num_stacks
  c.model.target = target
  c.input.batch_size = 4
  c.input.name = "synthetic_figures"
  return c
