"""Tiny joint, triplet and combined checkpoints in temporary workdirs, made once per process.

The test modules of evaluation, prediction and figures share them through
`trained(tmp_path_factory)` and `combined(tmp_path_factory)` (a module-level
cache; each workdir is made on first use). Each workdir is what
`launch.train` leaves: config.json, an orbax checkpoint at step 2 written by
the real `Checkpointer`, metrics.jsonl and TensorBoard logs. The weights are
freshly initialised (configs/tiny.py with one stack; the combined model has
one joint and one triplet stack): the tests check files, shapes and
geometry, not accuracy, and skipping the compilation of a training step
keeps them fast on two cores.
"""

import pathlib

_CACHE: dict[str, pathlib.Path] = {}
STEP = 2
# name -> configs/tiny.py argument.
_CONFIGS = {"joint": "stacks=1", "triplet": "stacks=1,target=contour",
            "combined": "stacks=1,target=combined"}


def _workdir(tmp_path_factory, name: str) -> pathlib.Path:
  """The workdir of `name` (see _CONFIGS), made on first use."""
  if name not in _CACHE:
    import jax  # pylint: disable=g-import-not-at-top
    from configs import tiny  # pylint: disable=g-import-not-at-top
    from triplet_pose import checkpointing  # pylint: disable=g-import-not-at-top
    from triplet_pose import config_files  # pylint: disable=g-import-not-at-top
    from triplet_pose import metric_writer  # pylint: disable=g-import-not-at-top
    from triplet_pose import train  # pylint: disable=g-import-not-at-top
    config = tiny.get_config(_CONFIGS[name])
    config.model.triplet_stacks = 1
    workdir = tmp_path_factory.mktemp("tiny_workdirs") / name
    config_files.save_config(config, workdir)
    state = train.create_train_state(config, jax.random.key(0)).replace(step=STEP)
    checkpointer = checkpointing.Checkpointer(workdir)
    checkpointer.save(STEP, state, {"position": STEP}, metrics={"eval_loss": 1.0})
    checkpointer.wait_until_finished()
    checkpointer.close()
    writer = metric_writer.MetricWriter(workdir)
    stacks = 2 if name == "combined" else 1
    for step in (1, 2):
      writer.write_scalars(step, {"train/loss": 3.0 / step, **{
          f"train/loss_stack_{s + 1}": 3.0 / step / stacks for s in range(stacks)}})
    writer.write_scalars(2, {"eval/eval_loss": 2.0, **{
        f"eval/eval_loss_stack_{s + 1}": 2.0 / stacks for s in range(stacks)}})
    writer.close()
    _CACHE[name] = workdir
  return _CACHE[name]


def trained(tmp_path_factory) -> dict[str, pathlib.Path]:
  """{"joint": workdir, "triplet": workdir} holding a checkpoint at step 2."""
  return {name: _workdir(tmp_path_factory, name) for name in ("joint", "triplet")}


def combined(tmp_path_factory) -> pathlib.Path:
  """The workdir of a combined model (one joint and one triplet stack) at step 2."""
  return _workdir(tmp_path_factory, "combined")
