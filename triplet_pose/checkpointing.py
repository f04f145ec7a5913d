"""Orbax checkpoints of the train state and the input position.

One `CheckpointManager` in `WORKDIR/checkpoints` keeps the newest N
checkpoints and, among those saved with evaluation metrics, the best M
(lowest or highest `best_metric`, by `best_mode`). Orbax writes each step to
a temporary directory and renames it when complete, so a crash mid-save (even
kill -9) leaves the previous checkpoint intact and the half-written one is
ignored on restart.

Each checkpoint holds two items: `state` (the TrainState pytree) and `input`
(the train iterator's JSON state), so a restart continues at the same step,
optimizer state and batch.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from triplet_pose import config as config_lib

CHECKPOINT_DIR = "checkpoints"
CONFIG_FILE = "config.json"


class Checkpointer:
  """Saves and restores (train state, input position) in a workdir."""

  def __init__(self, workdir: str | pathlib.Path, *, keep: int = 3,
               keep_best: int = 1, best_metric: str = "eval_loss",
               best_mode: str = "min", read_only: bool = False):
    if best_mode not in ("min", "max"):
      raise ValueError(f"best_mode must be 'min' or 'max', got {best_mode!r}")
    self.directory = pathlib.Path(workdir).absolute() / CHECKPOINT_DIR
    self.best_metric = best_metric
    self.best_mode = best_mode
    policy = policies.AnyPreservationPolicy([
        policies.LatestN(n=keep),
        # BestN keeps the last n of an ascending sort; reverse it for 'min'.
        policies.BestN(get_metric_fn=lambda m: m[best_metric],
                       reverse=best_mode == "min", n=keep_best,
                       keep_checkpoints_without_metrics=False),
    ])
    # best_fn is set only so that orbax writes the metrics of each step; which
    # steps are kept is decided by `policy`.
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy, best_fn=lambda m: m[best_metric],
        best_mode=best_mode, create=not read_only, read_only=read_only,
        cleanup_tmp_directories=not read_only)
    self._manager = ocp.CheckpointManager(
        self.directory, options=options, item_names=("state", "input"))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def best_step(self) -> int | None:
    """The kept step with the best `best_metric`, or None."""
    scored = []
    for step in self.all_steps():
      metrics = self._manager.metrics(step)
      if metrics and self.best_metric in metrics:
        scored.append((float(metrics[self.best_metric]), step))
    if not scored:
      return None
    return (min(scored) if self.best_mode == "min" else max(scored))[1]

  def save(self, step: int, state: Any, input_state: dict[str, Any], *,
           metrics: dict[str, float] | None = None) -> None:
    """Saves asynchronously; the previous checkpoint stays valid until done."""
    if metrics is not None:
      metrics = {k: float(v) for k, v in metrics.items()}
    self._manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                input=ocp.args.JsonSave(input_state)),
        metrics=metrics, force=True)

  def restore(self, state_template: Any, step: int | None = None
              ) -> tuple[Any, dict[str, Any]]:
    """Restores (state, input_state) at `step` (default: the newest).

    Args:
      state_template: a TrainState (or abstract one) giving the structure,
        shapes, dtypes and shardings to restore into.
      step: the step to restore.

    Raises:
      FileNotFoundError: when there is no checkpoint (at `step`).
    """
    step = self._resolve(step)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_template)
    restored = self._manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                      input=ocp.args.JsonRestore()))
    return restored["state"], dict(restored["input"] or {})

  def restore_raw_state(self, step: int | None = None) -> dict[str, Any]:
    """Restores the state item as plain nested dicts of arrays, no template."""
    step = self._resolve(step)
    restored = self._manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    return restored["state"]

  def wait_until_finished(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()

  def _resolve(self, step: int | None) -> int:
    steps = self.all_steps()
    if not steps:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    if step is None:
      return max(steps)
    if step not in steps:
      raise FileNotFoundError(
          f"no checkpoint for step {step} in {self.directory}; kept steps: {steps}")
    return step


def save_config(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> None:
  """Writes the config as JSON beside the checkpoints (process 0 only)."""
  if jax.process_index() != 0:
    return
  path = pathlib.Path(workdir) / CONFIG_FILE
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(config.to_json_best_effort(indent=2, sort_keys=True))


def load_config(workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
  """Reads the config a training run wrote into `workdir`.

  Fields added to `triplet_pose/config.py` after the run get their defaults, so
  older workdirs stay loadable.

  Raises:
    FileNotFoundError: when `workdir` holds no config.json.
  """
  path = pathlib.Path(workdir) / CONFIG_FILE
  if not path.exists():
    raise FileNotFoundError(
        f"{path} not found: {workdir} is not a triplet_pose training workdir")
  return ml_collections.ConfigDict(
      _fill_missing(json.loads(path.read_text()), config_lib.base_config().to_dict()))


def _fill_missing(loaded: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
  for key, default in defaults.items():
    if key not in loaded:
      loaded[key] = default
    elif isinstance(default, dict) and isinstance(loaded[key], dict):
      _fill_missing(loaded[key], default)
  return loaded
