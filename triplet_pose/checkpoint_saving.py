"""Saving a checkpoint without losing the previous one: room first, failures named.

A full disk or an unwritable directory: `SaveGuard.before_save` checks the
free space first, and `SaveGuard.write_errors` turns a failed write (of this
save or of the previous asynchronous one) into `storage.SaveError`, naming
the directory, the space needed and free, and the previous checkpoint, which
stays intact: orbax writes each step to `<step>.orbax-checkpoint-tmp*` and
renames it only when complete.
"""

from __future__ import annotations

import contextlib
import pathlib
import shutil
from typing import Any, Callable, Iterator

import jax

from triplet_pose import storage

# Free space asked for: the larger of the state's bytes and the newest
# checkpoint's size on disk (OCDBT and sharding files add ~10%), times
# SPACE_FACTOR, plus a margin for metadata and the JSON items.
SPACE_FACTOR = 1.1
SPACE_MARGIN_BYTES = 1 << 20
# The OS's reasons for a write that could not happen, as they appear in the
# messages of OSError and of tensorstore's errors (with these status codes).
_OS_REASONS = ("No space left on device", "Read-only file system", "Permission denied")
_WRITE_FAILURES = ("RESOURCE_EXHAUSTED", "PERMISSION_DENIED", "No space left",
                   "Read-only file system", "Permission denied")


class SaveGuard:
  """Checks the room for each save and names the directory when a write fails.

  Args:
    directory: the checkpoints' directory.
    latest_on_disk: the newest complete step, read again from disk (for the
      message: which checkpoint is still intact).
  """

  def __init__(self, directory: pathlib.Path, *,
               latest_on_disk: Callable[[], int | None]):
    self.directory = directory
    self._latest_on_disk = latest_on_disk
    self._pending: tuple[int, int] | None = None  # (step, bytes) being written

  def before_save(self, step: int, state: Any, *, latest: int | None) -> None:
    """Raises storage.SaveError when the checkpoint of `step` will not fit.

    Args:
      step: the step about to be saved.
      state: what is saved (its arrays' bytes are the size to expect).
      latest: the newest checkpoint's step (its size on disk, too).
    """
    written = storage.disk_size(self.directory / str(latest)) if latest is not None else 0
    needed = int(max(_nbytes(state), written) * SPACE_FACTOR) + SPACE_MARGIN_BYTES
    self._pending = (step, needed)
    if jax.process_index() != 0:
      return
    try:
      storage.check_writable(self.directory, needed_bytes=needed,
                             what=f"checkpoint {step}")
    except storage.SaveError as e:
      self._pending = None
      raise storage.SaveError(f"{e}{self._previous_note()}") from None

  def finished(self) -> None:
    """The pending save is on disk."""
    self._pending = None

  @contextlib.contextmanager
  def write_errors(self) -> Iterator[None]:
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
    latest = self._latest_on_disk()
    return ("; nothing was saved before" if latest is None
            else f"; the previous checkpoint (step {latest}) is intact")


def _nbytes(tree: Any) -> int:
  """Bytes of a pytree's arrays (Python scalars count 8): what a save writes."""
  return sum(getattr(x, "nbytes", 8) for x in jax.tree.leaves(tree))


def _write_failure(e: Exception) -> str:
  """The OS's reason ('No space left on device') rather than the whole chain."""
  if isinstance(e, OSError) and e.strerror:
    return e.strerror
  text = str(e)
  for reason in _OS_REASONS:
    if reason.split(" on ")[0] in text:
      return reason
  return f"{type(e).__name__}: {' '.join(text.split())[:300]}"
