"""Orbax checkpoints of the train state and the input position, kept safe.

One `CheckpointManager` in `WORKDIR/checkpoints` keeps the newest N
checkpoints and, among those saved with evaluation metrics, the best M
(lowest or highest `best_metric`, by `best_mode`; orbax's `best_step()`).

Each checkpoint holds `state` (the TrainState pytree), `input` (the train
iterator's JSON state), so a restart continues at the same step, optimizer
state and batch, and `config` (a copy of WORKDIR/config.json, so a workdir
whose config.json is lost stays loadable).

Faults are recovered, not just reported:

* A save killed mid-write: orbax writes each step to
  `<step>.orbax-checkpoint-tmp*` and renames it when complete, so the
  previous checkpoint stays intact and the partial one is ignored (and
  removed by the next training run).
* A damaged checkpoint (files overwritten, truncated or missing): `restore`
  moves it aside to `checkpoints/<step>.corrupt` (never deleted), logs one
  warning with the reason and continues from the newest intact checkpoint;
  when none is left, `CheckpointError` lists every step tried.
* A full disk or an unwritable directory: `save` checks the free space
  first and turns a failed write into `storage.SaveError`, naming the
  directory and the space needed; the previous checkpoint stays intact.
* A missing or unreadable config.json: `load_config` falls back to the copy
  saved in the newest checkpoint holding one.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import shutil
from typing import Any, Callable, Sequence

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint import checkpoint_managers as policies

from triplet_pose import config as config_lib
from triplet_pose import storage

CHECKPOINT_DIR = "checkpoints"
CONFIG_FILE = "config.json"
CORRUPT_SUFFIX = ".corrupt"
# What orbax / tensorstore raise for damaged or missing files: tensorstore's
# OUT_OF_RANGE / DATA_LOSS are ValueErrors, a missing item is a KeyError,
# a truncated JSON file a JSONDecodeError (a ValueError).
READ_ERRORS = (OSError, ValueError, KeyError, EOFError)
# The top-level entries of a saved train state (train.TrainState's arrays).
STATE_KEYS = ("step", "params", "batch_stats", "opt_state")
# Free space asked for: the larger of the state's bytes and the newest
# checkpoint's size on disk (OCDBT and sharding files add ~10%), times
# SPACE_FACTOR, plus a margin for metadata and the JSON items.
SPACE_FACTOR = 1.1
SPACE_MARGIN_BYTES = 1 << 20
_ITEMS = ("state", "input", "config")
# tensorstore status codes and OS messages of a write that could not happen.
_WRITE_FAILURES = ("RESOURCE_EXHAUSTED", "PERMISSION_DENIED", "No space left",
                   "Read-only file system", "Permission denied")


class CheckpointError(ValueError):
  """No intact checkpoint, or one that does not fit the model asked for."""


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
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy, best_fn=lambda m: m[best_metric],
        best_mode=best_mode, create=not read_only, read_only=read_only,
        cleanup_tmp_directories=not read_only)
    self._manager = ocp.CheckpointManager(
        self.directory, options=options, item_names=_ITEMS)
    self._pending: tuple[int, int] | None = None  # (step, bytes) being written
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
    # waiting here first makes the free space measured below final.
    self.wait_until_finished()
    latest = self.latest_step()
    written = storage.disk_size(self.directory / str(latest)) if latest is not None else 0
    needed = int(max(_nbytes(state), written) * SPACE_FACTOR) + SPACE_MARGIN_BYTES
    if jax.process_index() == 0:
      self._check_space(step, needed)
    items = {"state": ocp.args.StandardSave(state),
             "input": ocp.args.JsonSave(input_state)}
    config = _read_json(self.workdir / CONFIG_FILE)
    if config is not None:
      items["config"] = ocp.args.JsonSave(config)
    with self._save_errors():
      self._manager.save(step, args=ocp.args.Composite(**items), metrics=metrics,
                         force=True)
    self._pending = (step, needed)

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
      CheckpointError: no intact checkpoint, or the intact one does not fit
        `state_template` (a different model config).
    """
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_template)
    args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                              input=ocp.args.JsonRestore())
    restored = self._restore_intact(step, args, check_fit=True)
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
        # Unreadable metadata (a damaged checkpoint): a read error like orbax's.
        raise ValueError(f"the state metadata of step {candidate} lacks {list(keys)}") from e
      restore_args = jax.tree.map(
          lambda a: ocp.ArrayRestoreArgs(sharding=a.sharding, global_shape=a.shape,
                                         dtype=a.dtype), wanted)
      with ocp.PyTreeCheckpointer() as checkpointer:
        return checkpointer.restore(
            self.directory / str(candidate) / "state",
            args=ocp.args.PyTreeRestore(item=wanted, restore_args=restore_args,
                                        partial_restore=True))
    return self._restore_intact(step, restore, check_fit=False)

  def _local_abstract(self, step: int) -> Any:
    """The saved state's shapes and dtypes, placed on this process's first device.

    Without a target orbax restores the saved sharding, which fails
    ('Topology mismatch') for a checkpoint that a multi-process job wrote.
    """
    tree = ocp.StandardCheckpointer().metadata(self.directory / str(step) / "state").item_metadata
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), tree)

  def restore_config(self) -> dict[str, Any] | None:
    """The config.json copy of the newest checkpoint that holds one, or None."""
    for step in sorted(self.all_steps(), reverse=True):
      try:
        restored = self._manager.restore(
            step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
      except READ_ERRORS:
        continue  # written before checkpoints held the config, or damaged
      if isinstance(restored["config"], dict):
        return dict(restored["config"])
    return None

  def wait_until_finished(self) -> None:
    """Waits for the pending save; raises storage.SaveError if it failed."""
    with self._save_errors():
      self._manager.wait_until_finished()
    self._pending = None

  def close(self) -> None:
    self._manager.close()

  def _restore_intact(self, step: int | None,
                      restore: ocp.args.Composite | Callable[[int], Any], *,
                      check_fit: bool) -> Any:
    """Restores `step` (default: newest first), moving damaged steps aside.

    `restore`: the manager's restore arguments, or a function that restores
    a given step itself.
    """
    steps = self.all_steps()
    if not steps:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    if step is not None and step not in steps:
      raise FileNotFoundError(
          f"no checkpoint for step {step} in {self.directory}; kept steps: {steps}")
    tried = []
    for candidate in [step] if step is not None else sorted(steps, reverse=True):
      try:
        if callable(restore):
          return restore(candidate)
        return self._manager.restore(candidate, args=restore)
      except READ_ERRORS as e:
        reason = _one_line(e)
        if check_fit and self._readable(candidate):
          raise CheckpointError(
              f"{self.directory / str(candidate)} is intact but does not fit the model "
              f"of the config (a different model.* setting?): {reason}") from e
      aside = self._set_aside(candidate, reason)
      tried.append(f"step {candidate} ({reason}) -> {aside}")
    raise CheckpointError(
        f"no intact checkpoint in {self.directory}; tried " + "; ".join(tried)
        + ". Nothing was deleted; the damaged checkpoints were moved aside.")

  def _readable(self, step: int) -> bool:
    """Whether `step` reads without a template (so a failure was a misfit)."""
    try:
      self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(self._local_abstract(step)),
          input=ocp.args.JsonRestore()))
    except READ_ERRORS:
      return False
    return True

  def _set_aside(self, step: int, reason: str) -> pathlib.Path:
    """Renames a damaged step to `<step>.corrupt[-N]` and logs one line."""
    source = self.directory / str(step)
    target = source.with_name(source.name + CORRUPT_SUFFIX)
    n = 0
    while target.exists():
      n += 1
      target = source.with_name(f"{source.name}{CORRUPT_SUFFIX}-{n}")
    try:
      source.rename(target)
    except OSError as e:  # a read-only workdir: skip it without moving it
      logging.warning("checkpoint %s is damaged (%s); left in place (cannot move it: "
                      "%s), trying an older one", source, reason, e.strerror)
      target = source
    else:
      logging.warning("checkpoint %s is damaged (%s); moved aside to %s, trying an "
                      "older one", source, reason, target)
    if target == source:  # still on disk under its step: skip it from now on
      self._damaged.add(step)
    self._manager.reload()
    return target

  def _check_space(self, step: int, needed: int) -> None:
    """Raises storage.SaveError when `needed` bytes will not fit."""
    try:
      storage.check_writable(self.directory, needed_bytes=needed,
                             what=f"checkpoint {step}")
    except storage.SaveError as e:
      raise storage.SaveError(f"{e}{self._previous_note()}") from None

  @contextlib.contextmanager
  def _save_errors(self):
    """Turns a failed write into a storage.SaveError naming the directory."""
    try:
      yield
    except storage.SaveError:
      raise
    except OSError as e:  # ENOSPC, EACCES, EROFS... from orbax's writer threads
      raise self._save_failed(e) from e
    except ValueError as e:  # tensorstore reports failed writes as ValueError
      if not any(s in str(e) for s in _WRITE_FAILURES):
        raise
      raise self._save_failed(e) from e

  def _save_failed(self, e: Exception) -> storage.SaveError:
    step, needed = self._pending or (None, 0)
    what = f"checkpoint {step}" if step is not None else "a checkpoint"
    free = (storage.format_mb(shutil.disk_usage(self.directory).free)
            if self.directory.exists() else "?")
    self._pending = None
    return storage.SaveError(
        f"cannot save {what} in {self.directory} ({_write_failure(e)}): needs "
        f"about {storage.format_mb(needed)}, {free} free{self._previous_note()}")

  def _previous_note(self) -> str:
    self._manager.reload()
    latest = self.latest_step()
    return ("; nothing was saved before" if latest is None
            else f"; the previous checkpoint (step {latest}) is intact")


def save_config(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> None:
  """Writes the config as JSON beside the checkpoints (process 0 only).

  The file is written to a temporary name and renamed, so an interrupted
  write never leaves a half-written config.json.
  """
  if jax.process_index() != 0:
    return
  path = pathlib.Path(workdir) / CONFIG_FILE
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
  path = workdir / CONFIG_FILE
  loaded, problem = None, "not found"
  if path.is_file():
    try:
      loaded = json.loads(path.read_text())
      problem = None if isinstance(loaded, dict) else "not a JSON object"
    except (OSError, ValueError) as e:  # unreadable, truncated or not UTF-8
      problem = _one_line(e)
  if problem is not None:
    loaded = _config_from_checkpoints(workdir)
    if loaded is None:
      raise FileNotFoundError(
          f"{path} {problem} and no checkpoint in {workdir / CHECKPOINT_DIR} holds a copy: "
          f"{workdir} is not a readable triplet_pose training workdir")
    logging.warning("%s %s; using the copy saved with the newest checkpoint", path, problem)
  return ml_collections.ConfigDict(
      _fill_missing(loaded, config_lib.base_config().to_dict()))


def _config_from_checkpoints(workdir: pathlib.Path) -> dict[str, Any] | None:
  if not (workdir / CHECKPOINT_DIR).is_dir():
    return None
  checkpointer = Checkpointer(workdir, read_only=True)
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


def _nbytes(tree: Any) -> int:
  """Bytes of a pytree's arrays (Python scalars count 8): what a save writes."""
  return sum(getattr(x, "nbytes", 8) for x in jax.tree.leaves(tree))


def _read_json(path: pathlib.Path) -> dict[str, Any] | None:
  try:
    value = json.loads(path.read_text())
  except (OSError, ValueError):
    return None
  return value if isinstance(value, dict) else None


def _one_line(e: BaseException) -> str:
  text = " ".join(str(e).split()) or type(e).__name__
  return f"{type(e).__name__}: {text[:300]}"


def _write_failure(e: Exception) -> str:
  """The OS's reason ('No space left on device') rather than the whole chain."""
  if isinstance(e, OSError) and e.strerror:
    return e.strerror
  text = str(e)
  for reason in _WRITE_FAILURES[2:]:
    if reason in text:
      return reason + ("" if reason != "No space left" else " on device")
  return _one_line(e)

