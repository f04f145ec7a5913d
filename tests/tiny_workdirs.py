"""Tiny joint and triplet checkpoints in temporary workdirs, made once per test process.

The test modules of evaluation, prediction and figures share them through
`trained(tmp_path_factory)` (a module-level cache). Each workdir is what
`launch.train` leaves: config.json, an orbax checkpoint at step 2 written by
the real `Checkpointer`, metrics.jsonl and TensorBoard logs. The weights are
freshly initialised (configs/tiny.py with one stack): the tests check files,
shapes and geometry, not accuracy, and skipping the compilation of a training
step keeps them fast on two cores.
"""

import pathlib

_CACHE: dict[str, pathlib.Path] = {}
STEP = 2


def trained(tmp_path_factory) -> dict[str, pathlib.Path]:
  """{"joint": workdir, "triplet": workdir} holding a checkpoint at step 2."""
  if not _CACHE:
    import jax  # pylint: disable=g-import-not-at-top
    from configs import tiny  # pylint: disable=g-import-not-at-top
    from triplet_pose import checkpointing  # pylint: disable=g-import-not-at-top
    from triplet_pose import metric_writer  # pylint: disable=g-import-not-at-top
    from triplet_pose import train  # pylint: disable=g-import-not-at-top
    root = tmp_path_factory.mktemp("tiny_workdirs")
    for name, arg in (("joint", "stacks=1"), ("triplet", "stacks=1,target=contour")):
      config = tiny.get_config(arg)
      workdir = root / name
      checkpointing.save_config(config, workdir)
      state = train.create_train_state(config, jax.random.key(0)).replace(step=STEP)
      checkpointer = checkpointing.Checkpointer(workdir)
      checkpointer.save(STEP, state, {"position": STEP}, metrics={"eval_loss": 1.0})
      checkpointer.wait_until_finished()
      checkpointer.close()
      writer = metric_writer.MetricWriter(workdir)
      for step in (1, 2):
        writer.write_scalars(step, {"train/loss": 3.0 / step,
                                    "train/loss_stack_1": 3.0 / step})
      writer.write_scalars(2, {"eval/eval_loss": 2.0, "eval/eval_loss_stack_1": 2.0})
      writer.close()
      _CACHE[name] = workdir
  return dict(_CACHE)
