"""Checkpointer faults (damaged, half-written, missing checkpoints; lost config; full disk) and storage."""

import json
import logging
import shutil
import sys
import threading
import types

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from triplet_pose import checkpoint_recovery
from triplet_pose import checkpointing
from triplet_pose import config_files
from triplet_pose import storage


def _state(step):
  # `r` does not compress: orbax writes it to a data file of its own rather
  # than inline in the array index, as it does the real model's arrays.
  r = np.random.default_rng(step).normal(size=(32, 32))
  return {"params": {"w": jnp.full((32, 32), float(step)), "r": jnp.asarray(r, jnp.float32)},
          "step": jnp.int32(step)}


def _workdir(path, steps=(1, 2), **kwargs):
  """A workdir with config.json and a checkpoint at each of `steps`."""
  config_files.save_config(ml_collections.ConfigDict({"model": {"target": "joints"}}), path)
  ckpt = checkpointing.Checkpointer(path, keep=5, **kwargs)
  for step in steps:
    ckpt.save(step, _state(step), {"position": step})
  ckpt.wait_until_finished()
  ckpt.close()
  return path


def _damage(path, step):
  """Overwrites every file of the checkpoint's state, as a failing disk might."""
  for f in (path / checkpointing.CHECKPOINT_DIR / str(step) / "state").rglob("*"):
    if f.is_file():
      f.write_bytes(b"garbage")


def test_damaged_newest_checkpoint_is_moved_aside_and_the_previous_restored(tmp_path, caplog):
  _workdir(tmp_path)
  _damage(tmp_path, 2)
  ckpt = checkpointing.Checkpointer(tmp_path)
  with caplog.at_level(logging.WARNING):
    state, input_state = ckpt.restore(_state(0))
  assert int(state["step"]) == 1 and input_state == {"position": 1}
  np.testing.assert_array_equal(state["params"]["w"], 1.0)
  aside = tmp_path / "checkpoints" / "2.corrupt"
  assert aside.is_dir() and not (tmp_path / "checkpoints" / "2").exists()
  assert ckpt.all_steps() == [1]
  warning, = [r.getMessage() for r in caplog.records if " is damaged (" in r.getMessage()]
  assert str(aside) in warning and "\n" not in warning
  ckpt.close()
  # The set-aside directory is not taken for a step by a later manager.
  assert checkpointing.Checkpointer(tmp_path, read_only=True).all_steps() == [1]


def test_raw_restore_also_skips_a_damaged_checkpoint(tmp_path):
  _workdir(tmp_path)
  _damage(tmp_path, 2)
  raw = checkpointing.Checkpointer(tmp_path, read_only=True).restore_raw_state()
  assert int(raw["step"]) == 1
  assert (tmp_path / "checkpoints" / "2.corrupt").is_dir()


def test_raw_restore_of_some_entries_reads_only_those(tmp_path):
  """Inference restores params (+ batch_stats, step) without the optimizer state."""
  config_files.save_config(ml_collections.ConfigDict({"model": {"target": "joints"}}), tmp_path)
  ckpt = checkpointing.Checkpointer(tmp_path)
  state = {**_state(3), "opt_state": {"mu": jnp.full((32, 32), 7.0)}}
  ckpt.save(3, state, {"position": 3})
  ckpt.wait_until_finished()
  ckpt.close()
  reader = checkpointing.Checkpointer(tmp_path, read_only=True)
  raw = reader.restore_raw_state(keys=("step", "params"))
  assert sorted(raw) == ["params", "step"]
  np.testing.assert_array_equal(raw["params"]["w"], state["params"]["w"])
  assert int(raw["step"]) == 3
  assert sorted(reader.restore_raw_state()) == ["opt_state", "params", "step"]
  with pytest.raises(ValueError, match="no state entries"):
    reader.restore_raw_state(keys=("params", "opt"))


def test_raw_restore_of_some_entries_skips_a_damaged_checkpoint(tmp_path):
  _workdir(tmp_path)
  _damage(tmp_path, 2)
  raw = checkpointing.Checkpointer(tmp_path, read_only=True).restore_raw_state(
      keys=("step", "params"))
  assert int(raw["step"]) == 1
  np.testing.assert_array_equal(raw["params"]["w"], 1.0)
  assert (tmp_path / "checkpoints" / "2.corrupt").is_dir()


def test_half_written_checkpoints_are_skipped(tmp_path):
  _workdir(tmp_path, steps=(1, 2, 3))
  ckpt_dir = tmp_path / "checkpoints"
  # A save killed before orbax's final rename: a temporary directory.
  shutil.copytree(ckpt_dir / "3", ckpt_dir / "4.orbax-checkpoint-tmp-123")
  # A step directory whose items never arrived (e.g. a copy cut short).
  shutil.rmtree(ckpt_dir / "3" / "state")
  state, _ = checkpointing.Checkpointer(tmp_path).restore(_state(0))
  assert int(state["step"]) == 2
  assert (ckpt_dir / "3.corrupt").is_dir()


def test_no_intact_checkpoint_lists_every_step_tried(tmp_path):
  _workdir(tmp_path)
  _damage(tmp_path, 1)
  _damage(tmp_path, 2)
  with pytest.raises(checkpoint_recovery.CheckpointError) as e:
    checkpointing.Checkpointer(tmp_path).restore(_state(0))
  message = str(e.value)
  assert "no intact checkpoint in " + str(tmp_path / "checkpoints") in message
  assert "step 2" in message and "step 1" in message and "2.corrupt" in message
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
      "1.corrupt", "2.corrupt"]


def test_a_requested_damaged_step_is_not_replaced_by_another(tmp_path):
  _workdir(tmp_path)
  _damage(tmp_path, 1)
  with pytest.raises(checkpoint_recovery.CheckpointError, match="step 1"):
    checkpointing.Checkpointer(tmp_path).restore(_state(0), step=1)


def test_a_checkpoint_of_another_model_is_reported_not_moved(tmp_path):
  _workdir(tmp_path)
  other = {"params": {"w": jnp.zeros((32, 32)), "extra": jnp.zeros(3)}, "step": jnp.int32(0)}
  with pytest.raises(checkpoint_recovery.CheckpointError, match="does not fit"):
    checkpointing.Checkpointer(tmp_path).restore(other)
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["1", "2"]


@pytest.mark.parametrize("damage", ["missing", "unreadable"])
def test_lost_config_json_is_recovered_from_the_checkpoint(tmp_path, damage):
  _workdir(tmp_path)
  path = tmp_path / checkpointing.CONFIG_FILE
  if damage == "missing":
    path.unlink()
  else:
    path.write_text('{"model": {"tar')
  config = config_files.load_config(tmp_path)
  assert config.model.target == "joints"
  assert "optimizer" in config  # defaults filled in as for config.json


def test_no_config_anywhere_names_the_file(tmp_path):
  (tmp_path / checkpointing.CONFIG_FILE).write_text("not json")
  with pytest.raises(FileNotFoundError, match=str(tmp_path / "config.json")):
    config_files.load_config(tmp_path)


def test_too_little_space_stops_before_writing(tmp_path, monkeypatch):
  _workdir(tmp_path, steps=(1,))
  ckpt = checkpointing.Checkpointer(tmp_path)
  usage = shutil.disk_usage(tmp_path)
  monkeypatch.setattr(storage.shutil, "disk_usage", lambda _: usage._replace(free=1000))
  with pytest.raises(storage.SaveError) as e:
    ckpt.save(2, _state(2), {"position": 2})
  message = str(e.value)
  assert str(tmp_path / "checkpoints") in message and "needs about" in message
  assert "step 1) is intact" in message
  monkeypatch.undo()
  ckpt.close()
  state, _ = checkpointing.Checkpointer(tmp_path).restore(_state(0))
  assert int(state["step"]) == 1


def test_unwritable_directory_is_named(tmp_path, monkeypatch):
  _workdir(tmp_path, steps=(1,))
  ckpt = checkpointing.Checkpointer(tmp_path)
  monkeypatch.setattr(storage.os, "access", lambda *_: False)
  with pytest.raises(storage.SaveError, match="is not writable"):
    ckpt.save(2, _state(2), {"position": 2})


def test_disk_full_during_writes_keeps_the_previous_checkpoint(small_tmpfs, monkeypatch):
  # The space check is bypassed so that the write itself hits ENOSPC, as
  # when another process fills the disk after the check.
  monkeypatch.setattr(storage, "check_writable", lambda *_, **__: None)
  workdir = small_tmpfs("2m") / "w"
  ckpt = checkpointing.Checkpointer(workdir, keep=100)
  big = lambda s: {"w": jnp.asarray(np.random.default_rng(s).normal(size=(256, 256)),
                                    jnp.float32), "step": jnp.int32(s)}
  with pytest.raises(storage.SaveError) as e:
    for step in range(1, 20):
      ckpt.save(step, big(step), {"position": step})
      ckpt.wait_until_finished()
  message = str(e.value)
  assert str(workdir / "checkpoints") in message and "needs about" in message
  last = ckpt.latest_step()
  assert last is not None and f"step {last}) is intact" in message
  restored = checkpointing.Checkpointer(workdir, read_only=True).restore_raw_state()
  assert int(restored["step"]) == last


def test_check_writable_names_the_directory(tmp_path, monkeypatch):
  storage.check_writable(tmp_path / "new" / "dir", needed_bytes=10)
  usage = shutil.disk_usage(tmp_path)
  monkeypatch.setattr(storage.shutil, "disk_usage", lambda _: usage._replace(free=5))
  with pytest.raises(storage.SaveError, match=f"in {tmp_path / 'out'}: needs about"):
    storage.check_writable(tmp_path / "out", needed_bytes=10 << 20, what="predictions")


def test_config_json_is_written_whole(tmp_path):
  config_files.save_config(ml_collections.ConfigDict({"a": 1}), tmp_path)
  assert json.loads((tmp_path / "config.json").read_text()) == {"a": 1}
  assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_atomic_write_leaves_no_partial_file(tmp_path):
  path = tmp_path / "panel.png"
  path.write_bytes(b"old")
  with pytest.raises(OSError):
    with storage.atomic_write(path) as tmp:
      tmp.write_bytes(b"half")
      raise OSError(28, "No space left on device")
  assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["panel.png"]
  with storage.atomic_write(path) as tmp:
    assert tmp.suffix == ".png"
    tmp.write_bytes(b"new")
  assert path.read_bytes() == b"new"


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
  path = tmp_path_factory.mktemp("pristine")
  config_files.save_config(ml_collections.ConfigDict({"model": {"target": "joints"}}), path)
  ckpt = checkpointing.Checkpointer(path, keep=5)
  for step in (1, 2):
    ckpt.save(step, _state(step), {"position": step}, metrics={"eval_loss": 1.0 / step})
  ckpt.wait_until_finished()
  ckpt.close()
  return path


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
    state, input_state = ckpt.restore(_state(0))
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
    state, _ = checkpointing.Checkpointer(path).restore(_state(0))
    assert int(state["step"]) == 2
    return
  with pytest.raises(checkpoint_recovery.CheckpointError) as e:
    checkpointing.Checkpointer(path).restore(_state(0))
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
    state, _ = ckpt.restore(_state(0))
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
      ckpt.restore(_state(0))
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
