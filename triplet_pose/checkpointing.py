"""Orbax checkpoints of the train state and the input position, kept safe.

One `CheckpointManager` in `WORKDIR/checkpoints` keeps the newest N
checkpoints and, among those saved with evaluation metrics, the best M
(lowest or highest `best_metric`, by `best_mode`; orbax's `best_step()`).

Each checkpoint holds `state` (the TrainState pytree), `input` (the train
iterator's JSON state), so a restart continues at the same step, optimizer
state and batch, and `config` (a copy of WORKDIR/config.json, so a workdir
whose config.json is lost stays loadable: `config_files.load_config`).

Faults are recovered, not just reported:

* A save killed mid-write: orbax writes each step to
  `<step>.orbax-checkpoint-tmp*` and renames it when complete, so the
  previous checkpoint stays intact and the partial one is ignored (and
  removed by the next training run).
* A damaged checkpoint (any file that restoring reads overwritten, truncated
  or missing): `restore` moves it aside to `checkpoints/<step>.corrupt`
  (never deleted) and continues from the newest intact checkpoint, saying so
  in one line; when none is left, a `CheckpointError` says which steps were
  damaged and what to do (`checkpoint_recovery`). Damaged metrics or step
  metadata, which only describe a checkpoint, are moved aside alone and the
  checkpoint kept.
* A full disk or an unwritable directory: `save` checks the free space
  first and turns a failed write into `storage.SaveError`, naming the
  directory and the space needed; the previous checkpoint stays intact
  (`checkpoint_saving`).
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Callable, Sequence

import jax
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint import checkpoint_managers as policies

from triplet_pose import checkpoint_recovery as recovery
from triplet_pose import checkpoint_saving

CHECKPOINT_DIR = "checkpoints"
# The workdir's config file (written by config_files.save_config); each
# checkpoint keeps a copy of it.
CONFIG_FILE = "config.json"
# The top-level entries of a saved train state (train.TrainState's arrays).
STATE_KEYS = ("step", "params", "batch_stats", "opt_state")
_ITEMS = ("state", "input", "config")


class Checkpointer:
  """Saves and restores (train state, input position) in a workdir."""

  def __init__(self, workdir: str | pathlib.Path, *, keep: int = 3,
               keep_best: int = 1, best_metric: str = "eval_loss",
               best_mode: str = "min", read_only: bool = False):
    if best_mode not in ("min", "max"):
      raise ValueError(f"best_mode must be 'min' or 'max', got {best_mode!r}")
    self.workdir = pathlib.Path(workdir).absolute()
    self.directory = self.workdir / CHECKPOINT_DIR
    policy = policies.AnyPreservationPolicy([
        policies.LatestN(n=keep),
        # BestN keeps the last n of an ascending sort; reverse it for 'min'.
        policies.BestN(get_metric_fn=lambda m: m[best_metric],
                       reverse=best_mode == "min", n=keep_best,
                       keep_checkpoints_without_metrics=False),
    ])
    # best_fn is set so that orbax writes the metrics of each step (and
    # answers best_step()); which steps are kept is decided by `policy`.
    self._options = ocp.CheckpointManagerOptions(
        preservation_policy=policy, best_fn=lambda m: m[best_metric],
        best_mode=best_mode, create=not read_only, read_only=read_only,
        cleanup_tmp_directories=not read_only)
    self._manager = self._open_manager()
    self._saves = checkpoint_saving.SaveGuard(self.directory,
                                              latest_on_disk=self._latest_on_disk)
    self._damaged: set[int] = set()  # found damaged but could not be moved

  def latest_step(self) -> int | None:
    steps = self.all_steps()
    return max(steps) if steps else None

  def all_steps(self) -> list[int]:
    return [s for s in self._manager.all_steps() if s not in self._damaged]

  def save(self, step: int, state: Any, input_state: dict[str, Any], *,
           metrics: dict[str, float] | None = None) -> None:
    """Saves asynchronously; the previous checkpoint stays valid until done.

    Raises:
      storage.SaveError: too little free space for the checkpoint, or a
        write (of this or of the previous asynchronous save) failed.
    """
    if metrics is not None:
      metrics = {k: float(v) for k, v in metrics.items()}
    # Orbax waits for the previous save before starting this one anyway;
    # waiting here first makes the free space measured next final.
    self.wait_until_finished()
    self._saves.before_save(step, state, latest=self.latest_step())
    items = {"state": ocp.args.StandardSave(state),
             "input": ocp.args.JsonSave(input_state)}
    config = _read_json(self.workdir / CONFIG_FILE)
    if config is not None:
      items["config"] = ocp.args.JsonSave(config)
    with self._saves.write_errors():
      self._manager.save(step, args=ocp.args.Composite(**items), metrics=metrics,
                         force=True)

  def restore(self, state_template: Any, step: int | None = None
              ) -> tuple[Any, dict[str, Any]]:
    """Restores (state, input_state) of `step`, or of the newest intact step.

    Args:
      state_template: a TrainState (or abstract one) giving the structure,
        shapes, dtypes and shardings to restore into.
      step: the step to restore (default: the newest intact one; damaged
        newer ones are moved aside).

    Raises:
      FileNotFoundError: when there is no checkpoint (at `step`).
      checkpoint_recovery.CheckpointError: no intact checkpoint, or the
        intact one does not fit `state_template` (a different model config).
    """
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_template)
    args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                              input=ocp.args.JsonRestore())

    def restore(candidate: int) -> dict[str, Any]:
      # The template gives the shardings, so orbax would not read the saved
      # ones: read all the state's metadata, so that any damage is found now.
      self._state_metadata(candidate)
      return self._manager.restore(candidate, args=args)

    restored = self._restore_intact(restore, step, readable=self._readable)
    return restored["state"], dict(restored["input"] or {})

  def restore_raw_state(self, step: int | None = None,
                        keys: Sequence[str] | None = None) -> dict[str, Any]:
    """Restores the state item as plain nested dicts of arrays, no template.

    Damaged checkpoints are moved aside as in `restore`.

    Args:
      step: the step to restore (default: the newest intact one).
      keys: restore only these top-level entries of the state (e.g. params
        and batch_stats for inference: the optimizer's moments, twice the
        parameters, are neither read nor allocated); None: all of it.
    """
    unknown = sorted(set(keys or ()) - set(STATE_KEYS))
    if unknown:
      raise ValueError(f"restore_raw_state: no state entries {unknown}; "
                       f"a train state has {list(STATE_KEYS)}")

    def restore(candidate: int) -> dict[str, Any]:
      abstract = self._local_abstract(candidate)
      if keys is None:
        return self._manager.restore(candidate, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract)))["state"]
      try:
        wanted = {k: abstract[k] for k in keys}
      except (TypeError, KeyError) as e:
        # Metadata without these entries: damaged, as orbax's read errors say.
        raise ValueError(f"the state metadata of step {candidate} lacks {list(keys)}") from e
      restore_args = jax.tree.map(
          lambda a: ocp.ArrayRestoreArgs(sharding=a.sharding, global_shape=a.shape,
                                         dtype=a.dtype), wanted)
      with ocp.PyTreeCheckpointer() as checkpointer:
        return checkpointer.restore(
            self.directory / str(candidate) / "state",
            args=ocp.args.PyTreeRestore(item=wanted, restore_args=restore_args,
                                        partial_restore=True))
    return self._restore_intact(restore, step)

  def restore_config(self) -> dict[str, Any] | None:
    """The config.json copy of the newest checkpoint that holds one, or None."""
    for step in sorted(self.all_steps(), reverse=True):
      try:
        restored = self._manager.restore(
            step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
      except Exception as e:  # pylint: disable=broad-except  (classified)
        if not recovery.is_damage(e):
          raise
        continue  # written before checkpoints held the config, or damaged
      if isinstance(restored["config"], dict):
        return dict(restored["config"])
    return None

  def wait_until_finished(self) -> None:
    """Waits for the pending save; raises storage.SaveError if it failed."""
    with self._saves.write_errors():
      self._manager.wait_until_finished()
    self._saves.finished()

  def close(self) -> None:
    self._manager.close()

  def _restore_intact(self, restore: Callable[[int], Any], step: int | None, *,
                      readable: Callable[[int], bool] | None = None) -> Any:
    return recovery.restore_newest_intact(
        self.directory, self.all_steps(), restore, put_aside=self._put_aside,
        step=step, readable=readable)

  def _state_metadata(self, step: int) -> Any:
    """The saved state's tree of array metadata; raises if any of it is damaged.

    (`StandardCheckpointer.metadata` would log a damaged file and return None.)
    """
    handler = ocp.StandardCheckpointHandler()
    try:
      return handler.metadata(self.directory / str(step) / "state")
    finally:
      handler.close()

  def _local_abstract(self, step: int) -> Any:
    """The saved state's shapes and dtypes, placed on this process's first device.

    Without a target orbax restores the saved sharding, which fails
    ('Topology mismatch') for a checkpoint that a multi-process job wrote.
    """
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                        self._state_metadata(step))

  def _readable(self, step: int) -> bool:
    """Whether `step` reads without a template (so a failure was a misfit)."""
    try:
      self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(self._local_abstract(step)),
          input=ocp.args.JsonRestore()))
    except Exception as e:  # pylint: disable=broad-except  (classified)
      if not recovery.is_damage(e):
        raise
      return False
    return True

  def _put_aside(self, step: int) -> str:
    """Renames a damaged step to `<step>.corrupt[-N]`; says where it went."""
    where, why_not = recovery.set_aside(self.directory, str(step))
    if why_not is not None:  # a read-only workdir: skip it from now on
      self._damaged.add(step)
    self._manager.reload()
    return (f"moved aside to {where}" if why_not is None
            else f"left in place (cannot move it: {why_not})")

  def _latest_on_disk(self) -> int | None:
    self._manager.reload()
    return self.latest_step()

  def _open_manager(self) -> ocp.CheckpointManager:
    """Opens orbax's manager once the steps' damaged metrics are moved aside."""
    recovery.set_aside_damaged_descriptions(self.directory)
    try:
      return ocp.CheckpointManager(self.directory, options=self._options,
                                   item_names=_ITEMS)
    except Exception as e:  # pylint: disable=broad-except  (classified)
      if not recovery.is_damage(e):
        raise
      raise recovery.CheckpointError(
          f"cannot open the checkpoints in {self.directory}: {recovery.damage_reason(e)}"
      ) from e


def _read_json(path: pathlib.Path) -> dict[str, Any] | None:
  try:
    value = json.loads(path.read_text())
  except (OSError, ValueError):
    return None
  return value if isinstance(value, dict) else None
