"""Damaged checkpoints: recognised, moved aside, and an older intact one restored.

A checkpoint is damaged when a file that restoring reads is missing,
truncated or overwritten. Orbax and tensorstore say so in many ways:
tensorstore's status errors (`ValueError: OUT_OF_RANGE: ...`, DATA_LOSS,
NOT_FOUND, FAILED_PRECONDITION), JSON and UTF-8 decoding errors of the
metadata files, `FileNotFoundError`, `KeyError` for a missing item; and
orbax's asynchronous reader wraps them: a bare `Exception("Encountered error
while reading array index ...")`, a `RuntimeError("Event loop is closed")`
or an exception group whose causes are the read errors. `is_damage` walks
the whole chain (causes, contexts, groups) and classifies each error by its
type and message; a condition of the machine (memory, open files, a full
disk, a device out of memory) anywhere in the chain vetoes it, so that an
intact checkpoint is never moved aside for it.

`restore_newest_intact` tries the steps newest first. A damaged step is
renamed to `<step>.corrupt` (never deleted), and the restore continues with
the next older step, saying so in one warning line; when none is left,
`CheckpointError` names the damaged steps and what to do, in one line.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import json
import logging as py_logging
import pathlib
import re
import sys
from typing import Any, Callable, Iterator, Sequence

from absl import logging

CORRUPT_SUFFIX = ".corrupt"
# Status codes (tensorstore's messages start with one) of bytes that are
# missing or not what was written.
_DATA_STATUS = re.compile(
    r"\b(DATA_LOSS|OUT_OF_RANGE|NOT_FOUND|FAILED_PRECONDITION|INVALID_ARGUMENT):")
# Status codes and messages of the machine's state, not of the files.
_MACHINE_STATUS = re.compile(
    r"\b(RESOURCE_EXHAUSTED|CANCELLED|DEADLINE_EXCEEDED|UNAVAILABLE|ABORTED):"
    r"|[Oo]ut of memory|Too many open files|No space left")
_MACHINE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN,
                             errno.EINTR, errno.ENOSPC, errno.EDQUOT})
# Types of errors that reading or decoding damaged bytes raises.
_DATA_TYPES = (OSError, EOFError, ValueError, KeyError, IndexError)
# What tensorstore's callbacks meet when a failed read's event loop is gone.
_CLOSED_LOOP = "Event loop is closed"
_REASON_CHARS = 240
# Files that orbax reads for every step when it opens a directory. They
# describe a step (its metrics, which only rank it; its commit time) and
# hold none of its state: a damaged one is moved aside alone, and the
# checkpoint is kept.
_STEP_DESCRIPTIONS = ("metrics/metrics", "_CHECKPOINT_METADATA")


class CheckpointError(ValueError):
  """No intact checkpoint, or one that does not fit the model asked for."""


def is_damage(error: BaseException) -> bool:
  """Whether `error` says that a checkpoint's files are unreadable.

  True when some error in its chain is a read or decoding error (by type,
  or by a tensorstore status in its message) and none is a condition of the
  machine (`_MACHINE_STATUS`, `_MACHINE_ERRNOS`, MemoryError).
  """
  found = False
  for e in _chain(error):
    if _is_machine_condition(e):
      return False
    found = found or _is_read_error(e)
  return found


def damage_reason(error: BaseException) -> str:
  """One line: the innermost read error of `error`'s chain, e.g.
  'ValueError: OUT_OF_RANGE: Error reading "params.w/0" ...'."""
  errors = list(_chain(error))
  read = [e for e in errors if _is_read_error(e)]
  return _one_line((read or errors)[-1])


def restore_newest_intact(directory: pathlib.Path, steps: Sequence[int],
                          restore: Callable[[int], Any], *,
                          put_aside: Callable[[int], str],
                          step: int | None = None,
                          readable: Callable[[int], bool] | None = None) -> Any:
  """`restore(step)` of the newest intact step (or of `step`), moving damaged ones aside.

  Args:
    directory: the checkpoints' directory (for messages).
    steps: the steps there, any order.
    restore: reads one step; raises what orbax raises for damaged files.
    put_aside: moves a damaged step aside; returns where it went, as
      'moved aside to PATH' (or why it could not be moved).
    step: restore only this step (no fallback to another).
    readable: whether a step reads without the caller's template; when
      given, a step that fails with a template yet reads without one is
      reported as not fitting (a different model) and left in place.

  Raises:
    FileNotFoundError: no checkpoint (at `step`).
    CheckpointError: no intact checkpoint is left, `step` is damaged, or the
      newest intact one does not fit the template.
  """
  if not steps:
    raise FileNotFoundError(f"no checkpoint in {directory}")
  if step is not None and step not in steps:
    raise FileNotFoundError(
        f"no checkpoint for step {step} in {directory}; kept steps: {sorted(steps)}")
  # Before the first read: a failed read's echoes come from other threads,
  # and may come before its error reaches the caller.
  quiet_aborted_reads()
  damaged = []
  for candidate in [step] if step is not None else sorted(steps, reverse=True):
    try:
      restored = restore(candidate)
    except Exception as e:  # pylint: disable=broad-except  (classified below)
      if not is_damage(e):
        raise
      gc.collect()  # the abandoned reads, while their echoes are dropped
      reason = damage_reason(e)
      if readable is not None and readable(candidate):
        raise CheckpointError(
            f"{directory / str(candidate)} is intact but does not fit the model of the "
            f"config (a different model.* or tags.dim setting?): {reason}") from e
      damaged.append(f"step {candidate} is damaged ({reason}), {put_aside(candidate)}")
      continue
    if damaged:
      logging.warning("checkpoints in %s: %s; continuing from step %d, the newest intact one",
                      directory, "; ".join(damaged), candidate)
    return restored
  if step is not None:
    others = sorted(set(steps) - {step})
    raise CheckpointError(
        f"checkpoint {directory}: {damaged[0]}. Nothing was deleted; "
        + (f"the other steps kept are {others}" if others else "no other step is kept"))
  latest = max(steps)
  raise CheckpointError(
      f"no intact checkpoint in {directory}: " + "; ".join(damaged)
      + ". Nothing was deleted. Training again in this workdir starts from step 0; to "
      f"resume instead, put intact copies of the files back (e.g. {directory / str(latest)})")


def set_aside(directory: pathlib.Path, name: str) -> tuple[pathlib.Path, str | None]:
  """Renames `directory/name` to `name.corrupt[-N]`.

  Returns:
    (where it is now, None), or (where it was, the OS's reason) when it
    cannot be moved (a read-only workdir).
  """
  source = directory / name
  target = source.with_name(name + CORRUPT_SUFFIX)
  n = 0
  while target.exists():
    n += 1
    target = source.with_name(f"{name}{CORRUPT_SUFFIX}-{n}")
  try:
    source.rename(target)
  except OSError as e:
    return source, e.strerror or str(e)
  return target, None


def set_aside_damaged_descriptions(directory: pathlib.Path) -> None:
  """Moves aside each step's damaged metrics or step metadata (one warning each).

  Orbax would stop opening the directory at a damaged metrics file, and log
  a damaged step metadata file (with its content) at every opening.
  """
  if not directory.is_dir():
    return
  for step_dir in sorted(p for p in directory.iterdir() if p.name.isdigit()):
    for name in _STEP_DESCRIPTIONS:
      path = step_dir / name
      try:
        if isinstance(json.loads(path.read_text()), dict):
          continue
        reason = "not a JSON object"
      except FileNotFoundError:
        continue  # orbax does without
      except (OSError, ValueError) as e:
        reason = damage_reason(e)
      where, why_not = set_aside(path.parent, path.name)
      logging.warning("%s is damaged (%s), %s; the checkpoint itself is kept%s", path, reason,
                      f"moved aside to {where}" if why_not is None
                      else f"left in place (cannot move it: {why_not})",
                      " (without metrics, it is no longer ranked among the best)"
                      if name.startswith("metrics") else "")


def quiet_aborted_reads() -> None:
  """Drops the echoes of a failed orbax read from the process's stderr.

  When one array of a checkpoint fails to read, orbax closes its event loop
  while tensorstore still completes the other reads: each then calls
  `loop.call_soon_threadsafe` on the closed loop (an unraisable
  `RuntimeError: Event loop is closed`, printed with its traceback); the
  read's abandoned futures log 'exception was never retrieved', and its
  abandoned coroutines raise again when closed (each with a traceback).
  They arrive from other threads or when garbage is collected, hundreds of
  times, and may arrive before the read's error reaches the restore, which
  reports the damage in one line. Installed before a restore's first read
  (once per process); other errors still print.
  """
  if not getattr(sys.unraisablehook, "_drops_aborted_reads", False):
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
      if not _is_aborted_read_echo(unraisable):
        previous(unraisable)

    hook._drops_aborted_reads = True  # pylint: disable=protected-access
    sys.unraisablehook = hook
  asyncio_logger = py_logging.getLogger("asyncio")
  if not any(isinstance(f, _AbortedReadFilter) for f in asyncio_logger.filters):
    asyncio_logger.addFilter(_AbortedReadFilter())


class _AbortedReadFilter(py_logging.Filter):
  """Drops asyncio's 'exception was never retrieved' of failed checkpoint reads."""

  def filter(self, record: py_logging.LogRecord) -> bool:
    error = record.exc_info[1] if record.exc_info else None
    return not ("never retrieved" in record.getMessage() and error is not None
                and _is_failed_read(error))


def _is_aborted_read_echo(unraisable) -> bool:
  """A tensorstore callback meeting the closed loop, or an abandoned orbax read."""
  error = unraisable.exc_value
  if _is_closed_loop(error):
    frames, tb = [], unraisable.exc_traceback
    while tb is not None:
      frames.append(tb.tb_frame.f_code.co_name)
      tb = tb.tb_next
    return "call_soon_threadsafe" in frames
  code = getattr(unraisable.object, "cr_code", None)  # a coroutine closed unfinished
  return (code is not None and "/orbax/" in code.co_filename.replace("\\", "/")
          and error is not None and (_is_failed_read(error) or any(
              isinstance(e, GeneratorExit) for e in _chain(error))))


def _is_failed_read(error: BaseException) -> bool:
  """A failed read's error, or the closed loop that it leaves behind."""
  return is_damage(error) or any(_is_closed_loop(e) for e in _chain(error))


def _is_closed_loop(e: BaseException | None) -> bool:
  return isinstance(e, RuntimeError) and str(e) == _CLOSED_LOOP


def _chain(error: BaseException) -> Iterator[BaseException]:
  """`error`, its causes and contexts, and the members of exception groups."""
  seen, todo = set(), [error]
  while todo:
    e = todo.pop(0)
    if e is None or id(e) in seen:
      continue
    seen.add(id(e))
    yield e
    todo.extend(getattr(e, "exceptions", ()) if isinstance(e, BaseExceptionGroup) else ())
    todo.extend((e.__cause__, e.__context__))


def _is_read_error(e: BaseException) -> bool:
  return isinstance(e, _DATA_TYPES) or bool(_DATA_STATUS.search(str(e)))


def _is_machine_condition(e: BaseException) -> bool:
  if isinstance(e, (MemoryError, KeyboardInterrupt, SystemExit, asyncio.CancelledError)):
    return True
  if isinstance(e, OSError) and e.errno in _MACHINE_ERRNOS:
    return True
  return bool(_MACHINE_STATUS.search(str(e)))


def _one_line(e: BaseException) -> str:
  text = " ".join(str(e if not isinstance(e, KeyError) else e.args[0] if e.args else e)
                  .split()) or type(e).__name__
  if len(text) > _REASON_CHARS:
    text = text[:_REASON_CHARS - 3] + "..."
  return f"{type(e).__name__}: {text}"
