"""Each kind of file in a checkpoint folder damaged three ways, and how a
failed read is told from damage (its error chain, its echoes)."""

import json
import logging
import shutil
import sys
import threading
import types

import numpy as np
import pytest

import checkpoint_faults as faults
from triplet_pose import checkpoint_recovery
from triplet_pose import checkpointing
from triplet_pose import config_files


# Each kind of file in a checkpoint folder, damaged three ways. `_NEEDED`:
# files that restoring reads, so the step is damaged. `_DESCRIPTIONS`: files
# that only describe a step, moved aside alone while the checkpoint is kept.
_NEEDED = {
    "array data": "state/ocdbt.process_0/d/*",
    "array index": "state/d/*",
    "array manifest": "state/manifest.ocdbt",
    "sharding": "state/_sharding",
    "tree metadata": "state/_METADATA",
    "array metadata": "state/array_metadatas/*",
    "input state": "input/metadata",
}
_DESCRIPTIONS = {"metrics": "metrics/metrics", "step metadata": "_CHECKPOINT_METADATA"}
# Files orbax does without when they are missing (the template or the
# saved arrays give what they hold): deleting them damages nothing.
_OPTIONAL = ("sharding", "array metadata")
_DAMAGES = ("random", "truncate", "delete")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
  """A workdir with checkpoints at steps 1 and 2 (with metrics), made once."""
  return faults.workdir(tmp_path_factory.mktemp("pristine"), metrics=True)


def _copy(pristine, path, *, older=True):
  shutil.copytree(pristine, path)
  if not older:
    shutil.rmtree(path / "checkpoints" / "1")
  return path


def _damage_files(step_dir, pattern, how):
  """Damages the files of `step_dir` matching `pattern`; returns {path: bytes left}."""
  files = sorted(f for f in step_dir.glob(pattern) if f.is_file())
  assert files, pattern
  rng = np.random.default_rng(0)
  left = {}
  for f in files:
    if how == "delete":
      f.unlink()
      continue
    data = rng.bytes(100) if how == "random" else f.read_bytes()[:f.stat().st_size // 2]
    f.write_bytes(data)
    left[f.relative_to(step_dir)] = data
  return left


def _moved_aside(path, step, left):
  """The damaged step is under <step>.corrupt with the damaged bytes, nothing lost."""
  ckpt_dir = path / "checkpoints"
  aside = ckpt_dir / f"{step}{checkpoint_recovery.CORRUPT_SUFFIX}"
  assert aside.is_dir() and not (ckpt_dir / str(step)).exists()
  for name, data in left.items():
    assert (aside / name).read_bytes() == data
  assert (aside / "state").is_dir() and (aside / "commit_success.txt").is_file()


@pytest.mark.parametrize("how", _DAMAGES)
@pytest.mark.parametrize("kind", _NEEDED)
def test_each_damaged_file_falls_back_to_the_older_checkpoint(pristine, tmp_path, kind, how,
                                                              caplog):
  path = _copy(pristine, tmp_path / "w")
  left = _damage_files(path / "checkpoints" / "2", _NEEDED[kind], how)
  ckpt = checkpointing.Checkpointer(path)
  with caplog.at_level(logging.WARNING):
    state, input_state = ckpt.restore(faults.state(0))
  if how == "delete" and kind in _OPTIONAL:
    assert int(state["step"]) == 2 and ckpt.all_steps() == [1, 2]
    return
  assert int(state["step"]) == 1 and input_state == {"position": 1}
  np.testing.assert_array_equal(state["params"]["w"], 1.0)
  _moved_aside(path, 2, left)
  assert ckpt.all_steps() == [1]
  warning, = [r.getMessage() for r in caplog.records if " is damaged (" in r.getMessage()]
  assert "\n" not in warning and "step 2 is damaged" in warning
  assert "moved aside to" in warning and "continuing from step 1" in warning


@pytest.mark.parametrize("how", _DAMAGES)
@pytest.mark.parametrize("kind", _NEEDED)
def test_each_damaged_file_without_an_older_checkpoint_is_one_line(pristine, tmp_path, kind,
                                                                   how):
  path = _copy(pristine, tmp_path / "w", older=False)
  left = _damage_files(path / "checkpoints" / "2", _NEEDED[kind], how)
  if how == "delete" and kind in _OPTIONAL:
    state, _ = checkpointing.Checkpointer(path).restore(faults.state(0))
    assert int(state["step"]) == 2
    return
  with pytest.raises(checkpoint_recovery.CheckpointError) as e:
    checkpointing.Checkpointer(path).restore(faults.state(0))
  message = str(e.value)
  assert "\n" not in message and "step 2 is damaged" in message
  assert "Nothing was deleted" in message and "starts from step 0" in message
  _moved_aside(path, 2, left)


@pytest.mark.parametrize("kind,how", [("array data", "random"), ("sharding", "truncate"),
                                      ("tree metadata", "delete")])
def test_raw_restore_of_each_damaged_file_falls_back(pristine, tmp_path, kind, how):
  """Evaluation and prediction restore without a template: same outcome."""
  path = _copy(pristine, tmp_path / "w")
  left = _damage_files(path / "checkpoints" / "2", _NEEDED[kind], how)
  raw = checkpointing.Checkpointer(path, read_only=True).restore_raw_state(
      keys=("step", "params"))
  assert int(raw["step"]) == 1
  _moved_aside(path, 2, left)


@pytest.mark.parametrize("how", _DAMAGES)
@pytest.mark.parametrize("kind", _DESCRIPTIONS)
def test_damaged_metrics_or_step_metadata_are_moved_aside_alone(pristine, tmp_path, kind,
                                                                how, caplog):
  path = _copy(pristine, tmp_path / "w", older=False)
  left = _damage_files(path / "checkpoints" / "2", _DESCRIPTIONS[kind], how)
  with caplog.at_level(logging.WARNING):
    ckpt = checkpointing.Checkpointer(path)
    state, _ = ckpt.restore(faults.state(0))
  assert int(state["step"]) == 2 and ckpt.all_steps() == [2]
  warnings = [r.getMessage() for r in caplog.records if " is damaged (" in r.getMessage()]
  if how == "delete":
    assert not warnings
    return
  (name, data), = left.items()
  aside = path / "checkpoints" / "2" / f"{name}{checkpoint_recovery.CORRUPT_SUFFIX}"
  assert aside.read_bytes() == data
  warning, = warnings
  assert str(aside) in warning and "the checkpoint itself is kept" in warning


def test_a_damaged_config_copy_is_skipped_for_an_older_one(pristine, tmp_path):
  path = _copy(pristine, tmp_path / "w")
  (path / checkpointing.CONFIG_FILE).unlink()
  _damage_files(path / "checkpoints" / "2", "config/metadata", "random")
  assert config_files.load_config(path).model.target == "joints"  # step 1's copy


def test_an_error_that_is_not_damage_leaves_the_checkpoint(pristine, tmp_path, monkeypatch):
  """A bug or a machine condition is raised as it is; nothing is moved."""
  path = _copy(pristine, tmp_path / "w")
  ckpt = checkpointing.Checkpointer(path)
  for error in (TypeError("a bug"), MemoryError(),
                RuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 8 GB")):
    def fail(*_, error=error, **__):
      raise Exception("Encountered error while reading array index") from error
    monkeypatch.setattr(ckpt._manager, "restore", fail)  # pylint: disable=protected-access
    with pytest.raises(Exception, match="Encountered error"):
      ckpt.restore(faults.state(0))
    assert sorted(p.name for p in (path / "checkpoints").iterdir()) == ["1", "2"]


def _wrapped(inner, outer):
  try:
    try:
      raise inner
    except BaseException as e:
      raise outer from e
  except BaseException as e:  # pylint: disable=broad-except
    return e


@pytest.mark.parametrize("error,damage", [
    # tensorstore's errors as they come, and wrapped by orbax's reader
    (ValueError('OUT_OF_RANGE: Error reading "params.w/0.0" in OCDBT database'), True),
    (_wrapped(ValueError("DATA_LOSS: Error reading local file"),
              Exception("Encountered error while reading array index")), True),
    (_wrapped(ValueError("FAILED_PRECONDITION: Truncated Zstd-compressed stream"),
              RuntimeError("Event loop is closed")), True),
    (ExceptionGroup("reads", [RuntimeError("Event loop is closed"),
                              ValueError("NOT_FOUND: Error opening \"zarr\" driver")]), True),
    (_wrapped(FileNotFoundError(2, "No such file", "x/metadata"), RuntimeError("read")), True),
    (RuntimeError("INVALID_ARGUMENT: Error parsing object member"), True),
    (json.JSONDecodeError("Expecting value", "", 0), True),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), True),
    # the machine, not the files; and bugs
    (_wrapped(MemoryError(), Exception("Encountered error while reading array index")), False),
    (_wrapped(OSError(24, "Too many open files"), RuntimeError("read")), False),
    (ExceptionGroup("reads", [ValueError("DATA_LOSS: x"),
                              RuntimeError("RESOURCE_EXHAUSTED: device memory")]), False),
    (TypeError("unsupported operand"), False),
    (_wrapped(TypeError("a bug"), Exception("Encountered error while reading array index")),
     False),
    (RuntimeError("Event loop is closed"), False),  # an echo says nothing of the files
    (AttributeError("'NoneType' object has no attribute 'shape'"), False),
])
def test_is_damage_walks_the_chain_by_type_and_message(error, damage):
  assert checkpoint_recovery.is_damage(error) == damage


def test_damage_reason_names_the_innermost_read_error():
  error = _wrapped(ValueError("OUT_OF_RANGE: Error reading " + "x" * 1000),
                   Exception("Encountered error while reading array index"))
  reason = checkpoint_recovery.damage_reason(error)
  assert reason.startswith("ValueError: OUT_OF_RANGE: Error reading xx")
  assert len(reason) < 300


def _echo_of_closed_loop():
  """What tensorstore's callback hands sys.unraisablehook when orbax's loop is closed."""
  def call_soon_threadsafe():
    raise RuntimeError("Event loop is closed")
  try:
    call_soon_threadsafe()
  except RuntimeError as e:
    return types.SimpleNamespace(exc_type=type(e), exc_value=e,
                                 exc_traceback=e.__traceback__, err_msg=None, object=None)


def test_echoes_that_come_before_the_read_error_are_dropped(monkeypatch, tmp_path):
  """A failed read's echoes can reach the hook before its error reaches the restore."""
  seen = []
  monkeypatch.setattr("sys.unraisablehook", seen.append)

  def restore(step):
    echo = threading.Thread(target=lambda: sys.unraisablehook(_echo_of_closed_loop()))
    echo.start()
    echo.join()
    raise ValueError("DATA_LOSS: Error reading params.w")

  (tmp_path / "4").mkdir()
  with pytest.raises(checkpoint_recovery.CheckpointError, match="step 4 is damaged"):
    checkpoint_recovery.restore_newest_intact(
        tmp_path, [4], restore, put_aside=lambda step: "moved aside")
  assert seen == []


def test_echoes_of_an_aborted_read_are_dropped_other_errors_kept(monkeypatch):
  """Tensorstore's callbacks on orbax's closed loop print nothing; others do."""
  seen = []
  monkeypatch.setattr("sys.unraisablehook", seen.append)
  checkpoint_recovery.quiet_aborted_reads()

  def call_soon_threadsafe():
    raise RuntimeError("Event loop is closed")

  def other():
    raise RuntimeError("something else")

  for fn in (call_soon_threadsafe, other):
    try:
      fn()
    except RuntimeError as e:
      sys.unraisablehook(types.SimpleNamespace(
          exc_type=type(e), exc_value=e, exc_traceback=e.__traceback__, err_msg=None,
          object=None))
  assert [str(u.exc_value) for u in seen] == ["something else"]
  records = []
  handler = logging.Handler()
  handler.emit = records.append
  logger = logging.getLogger("asyncio")
  logger.addHandler(handler)
  try:
    for e in (_wrapped(ValueError("DATA_LOSS: x"), Exception("Encountered error while "
                                                              "reading array index")),
              TypeError("a bug")):
      logger.error("Future exception was never retrieved", exc_info=(type(e), e, None))
  finally:
    logger.removeHandler(handler)
  assert [r.exc_info[0] for r in records] == [TypeError]
