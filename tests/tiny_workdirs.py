"""Tiny joint and triplet checkpoints, trained once per test process.

The test modules of evaluation, prediction and figures share them through
`trained(tmp_path_factory)`: a module-level cache, so the two short training
runs (a few steps of configs/tiny.py with one stack) happen once however many
test files use them.
"""

import pathlib

_CACHE: dict[str, pathlib.Path] = {}


def trained(tmp_path_factory) -> dict[str, pathlib.Path]:
  """{"joint": workdir, "triplet": workdir} of tiny models trained for 2 steps."""
  if not _CACHE:
    from configs import tiny  # pylint: disable=g-import-not-at-top
    from triplet_pose import train  # pylint: disable=g-import-not-at-top
    root = tmp_path_factory.mktemp("tiny_workdirs")
    for name, arg in (("joint", "stacks=1"), ("triplet", "stacks=1,target=contour")):
      config = tiny.get_config(arg)
      config.num_train_steps = 2
      config.log_every_steps = 1
      config.eval_every_steps = 2
      config.eval_batches = 1
      config.checkpoint_every_steps = 2
      train.train_and_evaluate(config, root / name)
      _CACHE[name] = root / name
  return dict(_CACHE)
