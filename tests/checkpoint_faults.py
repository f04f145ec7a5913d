"""Checkpoints for the fault tests: a small state, a workdir with several
checkpoints, and a damaged state (tests/test_checkpointing.py,
tests/test_checkpoint_damage.py)."""

import jax.numpy as jnp
import ml_collections
import numpy as np

from triplet_pose import checkpointing
from triplet_pose import config_files


def state(step):
  # `r` does not compress: orbax writes it to a data file of its own rather
  # than inline in the array index, as it does the real model's arrays.
  r = np.random.default_rng(step).normal(size=(32, 32))
  return {"params": {"w": jnp.full((32, 32), float(step)), "r": jnp.asarray(r, jnp.float32)},
          "step": jnp.int32(step)}


def workdir(path, steps=(1, 2), *, metrics=False, **kwargs):
  """A workdir with config.json and a checkpoint at each of `steps` (with
  `metrics`, each saved with an eval_loss of 1 / step)."""
  config_files.save_config(ml_collections.ConfigDict({"model": {"target": "joints"}}), path)
  ckpt = checkpointing.Checkpointer(path, keep=5, **kwargs)
  for step in steps:
    ckpt.save(step, state(step), {"position": step},
              metrics={"eval_loss": 1.0 / step} if metrics else None)
  ckpt.wait_until_finished()
  ckpt.close()
  return path


def damage(path, step):
  """Overwrites every file of the checkpoint's state, as a failing disk might."""
  for f in (path / checkpointing.CHECKPOINT_DIR / str(step) / "state").rglob("*"):
    if f.is_file():
      f.write_bytes(b"garbage")
