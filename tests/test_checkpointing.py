"""Checkpointer faults (damaged, half-written, missing checkpoints; lost
config; full disk) and storage."""

import json
import logging
import shutil

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import checkpoint_faults as faults
from triplet_pose import checkpoint_recovery
from triplet_pose import checkpointing
from triplet_pose import config_files
from triplet_pose import storage


def test_damaged_newest_checkpoint_is_moved_aside_and_the_previous_restored(tmp_path, caplog):
  faults.workdir(tmp_path)
  faults.damage(tmp_path, 2)
  ckpt = checkpointing.Checkpointer(tmp_path)
  with caplog.at_level(logging.WARNING):
    state, input_state = ckpt.restore(faults.state(0))
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
  faults.workdir(tmp_path)
  faults.damage(tmp_path, 2)
  raw = checkpointing.Checkpointer(tmp_path, read_only=True).restore_raw_state()
  assert int(raw["step"]) == 1
  assert (tmp_path / "checkpoints" / "2.corrupt").is_dir()


def test_raw_restore_of_some_entries_reads_only_those(tmp_path):
  """Inference restores params (+ batch_stats, step) without the optimizer state."""
  config_files.save_config(ml_collections.ConfigDict({"model": {"target": "joints"}}), tmp_path)
  ckpt = checkpointing.Checkpointer(tmp_path)
  state = {**faults.state(3), "opt_state": {"mu": jnp.full((32, 32), 7.0)}}
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
  faults.workdir(tmp_path)
  faults.damage(tmp_path, 2)
  raw = checkpointing.Checkpointer(tmp_path, read_only=True).restore_raw_state(
      keys=("step", "params"))
  assert int(raw["step"]) == 1
  np.testing.assert_array_equal(raw["params"]["w"], 1.0)
  assert (tmp_path / "checkpoints" / "2.corrupt").is_dir()


def test_half_written_checkpoints_are_skipped(tmp_path):
  faults.workdir(tmp_path, steps=(1, 2, 3))
  ckpt_dir = tmp_path / "checkpoints"
  # A save killed before orbax's final rename: a temporary directory.
  shutil.copytree(ckpt_dir / "3", ckpt_dir / "4.orbax-checkpoint-tmp-123")
  # A step directory whose items never arrived (e.g. a copy cut short).
  shutil.rmtree(ckpt_dir / "3" / "state")
  state, _ = checkpointing.Checkpointer(tmp_path).restore(faults.state(0))
  assert int(state["step"]) == 2
  assert (ckpt_dir / "3.corrupt").is_dir()


def test_no_intact_checkpoint_lists_every_step_tried(tmp_path):
  faults.workdir(tmp_path)
  faults.damage(tmp_path, 1)
  faults.damage(tmp_path, 2)
  with pytest.raises(checkpoint_recovery.CheckpointError) as e:
    checkpointing.Checkpointer(tmp_path).restore(faults.state(0))
  message = str(e.value)
  assert "no intact checkpoint in " + str(tmp_path / "checkpoints") in message
  assert "step 2" in message and "step 1" in message and "2.corrupt" in message
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
      "1.corrupt", "2.corrupt"]


def test_a_requested_damaged_step_is_not_replaced_by_another(tmp_path):
  faults.workdir(tmp_path)
  faults.damage(tmp_path, 1)
  with pytest.raises(checkpoint_recovery.CheckpointError, match="step 1"):
    checkpointing.Checkpointer(tmp_path).restore(faults.state(0), step=1)


def test_a_checkpoint_of_another_model_is_reported_not_moved(tmp_path):
  faults.workdir(tmp_path)
  other = {"params": {"w": jnp.zeros((32, 32)), "extra": jnp.zeros(3)}, "step": jnp.int32(0)}
  with pytest.raises(checkpoint_recovery.CheckpointError, match="does not fit"):
    checkpointing.Checkpointer(tmp_path).restore(other)
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["1", "2"]


@pytest.mark.parametrize("damage", ["missing", "unreadable"])
def test_lost_config_json_is_recovered_from_the_checkpoint(tmp_path, damage):
  faults.workdir(tmp_path)
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
  faults.workdir(tmp_path, steps=(1,))
  ckpt = checkpointing.Checkpointer(tmp_path)
  usage = shutil.disk_usage(tmp_path)
  monkeypatch.setattr(storage.shutil, "disk_usage", lambda _: usage._replace(free=1000))
  with pytest.raises(storage.SaveError) as e:
    ckpt.save(2, faults.state(2), {"position": 2})
  message = str(e.value)
  assert str(tmp_path / "checkpoints") in message and "needs about" in message
  assert "step 1) is intact" in message
  monkeypatch.undo()
  ckpt.close()
  state, _ = checkpointing.Checkpointer(tmp_path).restore(faults.state(0))
  assert int(state["step"]) == 1


def test_unwritable_directory_is_named(tmp_path, monkeypatch):
  faults.workdir(tmp_path, steps=(1,))
  ckpt = checkpointing.Checkpointer(tmp_path)
  monkeypatch.setattr(storage.os, "access", lambda *_: False)
  with pytest.raises(storage.SaveError, match="is not writable"):
    ckpt.save(2, faults.state(2), {"position": 2})


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


