"""Writing files safely: room and permission checked first, files replaced whole.

Checkpoints (`checkpointing.Checkpointer`) and the outputs of prediction go
through these, so that a full disk or an unwritable folder stops a job with
one message naming the folder and the space needed, and no file is left
half-written under its final name:

* `check_writable(directory, needed_bytes=..., what=...)`: raises `SaveError`
  before writing when the folder is unwritable or too full.
* `atomic_write(path)`: a temporary path renamed onto `path` only when the
  write completed.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
from typing import Iterator


class SaveError(OSError):
  """A checkpoint or an output could not be written (disk full, unwritable)."""


def check_writable(directory: str | pathlib.Path, *, needed_bytes: int = 0,
                   what: str = "outputs") -> None:
  """Raises SaveError unless `directory` (or its nearest existing parent)
  is writable and has `needed_bytes` free.

  Args:
    directory: where the files will go (it may not exist yet).
    needed_bytes: the space the write needs.
    what: what is written, for the message ('predictions', 'checkpoint 10').
  """
  directory = pathlib.Path(directory).absolute()
  existing = directory
  while not existing.exists() and existing != existing.parent:
    existing = existing.parent
  if not os.access(existing, os.W_OK):
    raise SaveError(f"cannot write {what}: {existing} is not writable")
  free = shutil.disk_usage(existing).free
  if free < needed_bytes:
    raise SaveError(f"not enough space to write {what} in {directory}: needs "
                    f"about {format_mb(needed_bytes)}, {format_mb(free)} free")


def partial_path(path: str | pathlib.Path) -> pathlib.Path:
  """Where `path` is written before it is complete: a hidden file beside it."""
  path = pathlib.Path(path)
  # The same extension: image and video writers pick the format by it.
  return path.with_name(f".{path.stem}.partial{path.suffix}")


@contextlib.contextmanager
def atomic_write(path: str | pathlib.Path) -> Iterator[pathlib.Path]:
  """Yields a temporary path beside `path`, renamed onto it when the block ends.

  For writers of outputs (JSON, images, videos): a write cut short by a full
  disk or a kill leaves no truncated file under the final name, so every
  file already there stays valid. On an error the temporary file is removed.
  """
  tmp = partial_path(path)
  try:
    yield tmp
    tmp.replace(path)
  finally:
    tmp.unlink(missing_ok=True)


def write_text(path: str | pathlib.Path, text: str) -> pathlib.Path:
  """Writes `text` (UTF-8) to `path` through `atomic_write`; returns the path."""
  with atomic_write(path) as tmp:
    tmp.write_text(text, encoding="utf-8")
  return pathlib.Path(path)


def disk_size(directory: pathlib.Path) -> int:
  """Bytes of the files under `directory` (0 when it is gone)."""
  try:
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())
  except OSError:  # removed meanwhile (e.g. by a retention policy)
    return 0


def format_mb(num_bytes: float) -> str:
  return f"{num_bytes / 2**20:.1f} MB"
