"""A workdir's config.json: written whole, read back complete, recovered when lost.

`save_config` writes the run's config beside its checkpoints, and every
checkpoint keeps a copy of that file (`checkpointing.Checkpointer.save`).
`load_config` reads it back, filling in the defaults of fields added to
`triplet_pose/config.py` since the run; a missing or unreadable config.json
falls back to the copy saved with the newest checkpoint that holds one.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
import ml_collections
from absl import logging

from triplet_pose import checkpointing
from triplet_pose import config as config_lib
from triplet_pose import storage


def save_config(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> None:
  """Writes the config as JSON beside the checkpoints (process 0 only).

  The file is written to a temporary name and renamed, so an interrupted
  write never leaves a half-written config.json.
  """
  if jax.process_index() != 0:
    return
  path = pathlib.Path(workdir) / checkpointing.CONFIG_FILE
  path.parent.mkdir(parents=True, exist_ok=True)
  storage.write_text(path, config.to_json_best_effort(indent=2, sort_keys=True))


def load_config(workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
  """Reads the config a training run wrote into `workdir`.

  Fields added to `triplet_pose/config.py` after the run get their defaults, so
  older workdirs stay loadable. When config.json is missing or unreadable,
  the copy saved with the newest checkpoint is used (with a warning).

  Raises:
    FileNotFoundError: when `workdir` has neither a readable config.json
      nor a checkpoint holding a copy of it.
  """
  workdir = pathlib.Path(workdir)
  path = workdir / checkpointing.CONFIG_FILE
  loaded, problem = None, "not found"
  if path.is_file():
    try:
      loaded = json.loads(path.read_text())
      problem = None if isinstance(loaded, dict) else "not a JSON object"
    except (OSError, ValueError) as e:  # unreadable, truncated or not UTF-8
      problem = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
  if problem is not None:
    loaded = _config_from_checkpoints(workdir)
    if loaded is None:
      raise FileNotFoundError(
          f"{path} {problem} and no checkpoint in {workdir / checkpointing.CHECKPOINT_DIR} "
          f"holds a copy: {workdir} is not a readable triplet_pose training workdir")
    logging.warning("%s %s; using the copy saved with the newest checkpoint", path, problem)
  return ml_collections.ConfigDict(
      _fill_missing(loaded, config_lib.base_config().to_dict()))


def _config_from_checkpoints(workdir: pathlib.Path) -> dict[str, Any] | None:
  if not (workdir / checkpointing.CHECKPOINT_DIR).is_dir():
    return None
  checkpointer = checkpointing.Checkpointer(workdir, read_only=True)
  try:
    return checkpointer.restore_config()
  finally:
    checkpointer.close()


def _fill_missing(loaded: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
  for key, default in defaults.items():
    if key not in loaded:
      loaded[key] = default
    elif isinstance(default, dict) and isinstance(loaded[key], dict):
      _fill_missing(loaded[key], default)
  return loaded
