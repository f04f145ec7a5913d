"""Process set-up and error reporting shared by every `launch/` entry point.

Each entry point ends with

  if __name__ == "__main__":
    common.run(main)

and `run` does, in order:

1. parses the flags; a bad flag or config value (`--config.nope=1`, a
   mistyped number, an unknown config argument) is one line on stderr and
   exit status 2;
2. sets the process up: the absl log keeps only what a user needs (orbax's
   INFO lines and its expected warnings go), TensorFlow, which only reads
   data here, is kept off the GPUs so that JAX gets all their memory, and
   JAX's persistent compilation cache is on (`enable_compilation_cache`), so
   that a resumed or repeated run loads its compiled steps from disk;
3. runs `main`; an expected error (a missing or unreadable file, a wrong
   workdir kind, an invalid value, a damaged dataset or checkpoint, a full
   disk, a non-finite loss) ends the process with one line on stderr,
   `launch.<name>: error: <message>`, and exit status 2. The traceback is
   printed too with `--verbosity=1` or `TRIPLET_POSE_TRACEBACK=1`. Any other
   exception is a bug and keeps its traceback (exit status 1).

Joining a multi-process job (`jax.distributed.initialize`) is
`launch/distributed.py`'s `initialize()`, called by the entry points that
accept its flags before their first JAX call.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import logging as py_logging
import os
import pathlib
import shutil
import sys
import traceback
from typing import Any, Callable, Iterator, NoReturn, Sequence

from absl import app
from absl import flags
import jax

from triplet_pose import user_cache

EXIT_USER_ERROR = 2
TRACEBACK_ENV = "TRIPLET_POSE_TRACEBACK"
# TRIPLET_POSE_COMPILATION_CACHE=0 turns JAX's persistent compilation cache off.
COMPILATION_CACHE_ENV = "TRIPLET_POSE_COMPILATION_CACHE"
# The cache's size bound (least recently used entries go first), where the
# `filelock` package that JAX's eviction needs is installed.
_COMPILATION_CACHE_MAX_BYTES = 4 * 2**30
# Errors a user can cause and fix: files and folders (OSError, including a
# full disk), invalid values and damaged files (ValueError, including JSON,
# checkpoint and config errors), a diverging run (FloatingPointError).
EXPECTED_ERRORS = (OSError, ValueError, FloatingPointError, app.UsageError)
# Library log lines that say nothing a user acts on.
_QUIET_MESSAGES = ("did not provide metrics", "read only", "read_only=True",
                   # Checkpointer reads a state item's array metadata, which
                   # has no per-item _CHECKPOINT_METADATA file of its own.
                   "Metadata file does not exist", "Failed to get item metadata")
# What orbax / tensorstore log when a checkpoint write fails for lack of
# space or permission (the Checkpointer raises one SaveError for it).
_WRITE_FAILURES = ("RESOURCE_EXHAUSTED", "No space left", "PERMISSION_DENIED",
                   "Permission denied", "Read-only file system")


def run(main: Callable[[list[str]], Any], *, uses_tensorflow: bool = True) -> None:
  """`app.run(main)` with the set-up and error handling described above.

  Args:
    main: the entry point's main(argv).
    uses_tensorflow: whether the job reads data through TensorFlow (then
      TensorFlow is imported and kept off the GPUs; jobs that do not skip
      the import, which takes seconds).
  """
  def guarded(argv: list[str]) -> None:
    try:
      set_up_process(uses_tensorflow=uses_tensorflow)
      main(argv)
    except EXPECTED_ERRORS as e:
      if isinstance(e, OSError) and not _is_user_os_error(e):
        raise
      fail(e)
    except ImportError as e:  # an optional dependency, named with its extra
      if "pip install" not in str(e):
        raise
      fail(e)

  app.run(guarded, flags_parser=_parse_flags)


def set_up_process(*, uses_tensorflow: bool = True) -> None:
  """Log filters, TensorFlow off the GPUs, the compilation cache (once per process)."""
  py_logging.getLogger("absl").addFilter(_QuietLibraries())
  if uses_tensorflow:
    # Deferred: TensorFlow adds 2.4 s (measured), which the commands without it never pay.
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.config.set_visible_devices([], "GPU")
  enable_compilation_cache()


def enable_compilation_cache() -> pathlib.Path | None:
  """Turns on JAX's persistent compilation cache for this process.

  Every program JAX compiles from now on, however quickly it compiled (JAX
  keeps only those over 1 s by default), is written to
  `user_cache.cache_dir() / 'jax' / <CPU kind>` and loaded from there the
  next time any process compiles it: a resumed run compiles nothing
  (benchmarks/compile_time.py times it). JAX keys an entry by the program,
  its compile options, XLA flags, jax and jaxlib versions and device kind;
  XLA:CPU compiles for the host's vector extensions, hence a folder per
  CPU kind. Must run before the process's first compilation (JAX reads the
  setting once).

  Returns:
    The cache folder, or None when `$TRIPLET_POSE_COMPILATION_CACHE` is 0
    (then nothing is changed).
  """
  if os.environ.get(COMPILATION_CACHE_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
    return None
  path = user_cache.cache_dir() / "jax" / user_cache.cpu_kind()
  jax.config.update("jax_compilation_cache_dir", str(path))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
  if importlib.util.find_spec("filelock") is not None:
    jax.config.update("jax_compilation_cache_max_size", _COMPILATION_CACHE_MAX_BYTES)
  return path


def fail(error: BaseException | str) -> NoReturn:
  """Prints `launch.<name>: error: <message>` (+ traceback if asked); exit 2."""
  if isinstance(error, BaseException) and _want_traceback():
    traceback.print_exception(error)
  headline, details = format_message(error)
  sys.stderr.write(f"{program_name()}: error: {headline}\n")
  if details:
    sys.stderr.write(details + "\n")
  sys.exit(EXIT_USER_ERROR)


def format_message(error: BaseException | str) -> tuple[str, str]:
  """(one line, instructions): the message before a blank line, on one line.

  Messages that carry instructions (what to put where) separate them with a
  blank line; they are printed below the error line as written.
  """
  text = str(error) if not isinstance(error, KeyError) else str(error.args[0])
  head, _, details = text.partition("\n\n")
  head = " ".join(head.split()) or type(error).__name__
  return head, details.strip("\n")


def program_name() -> str:
  """'launch.train' for `python -m launch.train` (the module run)."""
  return f"launch.{pathlib.Path(sys.argv[0]).stem}"


@contextlib.contextmanager
def disk_full_names(directory: str | pathlib.Path, *, what: str) -> Iterator[None]:
  """Turns a full disk while writing `what` into an error naming `directory`.

  The OS's ENOSPC names neither the directory nor what was written; the
  message says both, the free space, and the size of what is there already.
  """
  try:
    yield
  except OSError as e:
    if e.errno not in (errno.ENOSPC, errno.EDQUOT):
      raise
    directory = pathlib.Path(directory).absolute()
    written = [p for p in directory.rglob("*") if p.is_file()] if directory.is_dir() else []
    size = sum(p.stat().st_size for p in written) / 2**20
    free = shutil.disk_usage(directory if directory.exists() else directory.parent).free
    raise OSError(
        f"no space left on device writing {what} in {directory} ({free / 2**20:.1f} MB "
        f"free; the {len(written)} file(s) written there before, {size:.1f} MB, are "
        "kept)") from e


def _want_traceback() -> bool:
  verbosity = flags.FLAGS["verbosity"].value if "verbosity" in flags.FLAGS else 0
  return verbosity >= 1 or os.environ.get(TRACEBACK_ENV, "") not in ("", "0")


def _is_user_os_error(e: OSError) -> bool:
  """Errors about files and disks, not e.g. a broken pipe to a child process."""
  return e.errno is None or e.filename is not None or isinstance(e, (
      FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError,
      NotADirectoryError)) or e.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT)


def _parse_flags(argv: Sequence[str]) -> list[str]:
  """absl's flag parsing with one-line errors and exit status 2."""
  try:
    return flags.FLAGS(list(argv))
  except flags.Error as e:
    fail(_without_traceback(str(e)))
  except (AttributeError, KeyError) as e:  # ml_collections: an unknown field
    name = str(e.args[0] if e.args else e).strip("\"'")
    given = [a.split("=")[0] for a in argv[1:] if a.startswith("--") and "." in a]
    culprit = next((a for a in given if a.rsplit(".", 1)[-1] == name), name)
    fail(f"{culprit}: the config has no field {name!r}")


def _without_traceback(message: str) -> str:
  """ml_collections puts the config file's traceback into its flag error:
  keep what precedes it and its last line (the exception itself)."""
  head, marker, rest = message.partition("Traceback (most recent call last):")
  if not marker:
    return message
  last = [line for line in rest.splitlines() if line.strip()][-1:]
  return " ".join([head.strip(), *last])


class _QuietLibraries(py_logging.Filter):
  """Drops orbax's INFO records (it logs every save) and its warnings that
  say nothing to act on (`_QUIET_MESSAGES`: no metrics between evaluations,
  read-only opening for evaluation and prediction, item metadata); its
  tracebacks of a failed write unless a traceback is asked for."""

  def filter(self, record: py_logging.LogRecord) -> bool:
    if "/orbax/" not in record.pathname:
      return True
    message = record.getMessage()
    if record.levelno >= py_logging.ERROR:
      # A failed write (full disk...) is logged by every orbax thread with
      # its traceback; the Checkpointer's SaveError says it in one line.
      if record.exc_info and record.exc_info[1] is not None:
        message += " " + _chain_text(record.exc_info[1])
      return _want_traceback() or not any(s in message for s in _WRITE_FAILURES)
    return record.levelno >= py_logging.WARNING and not any(
        s in message for s in _QUIET_MESSAGES)


def _chain_text(error: BaseException) -> str:
  """The messages of an exception and of its causes."""
  texts = []
  while error is not None and len(texts) < 10:
    texts.append(str(error))
    error = error.__cause__ or error.__context__
  return " ".join(texts)
