"""launch.train end to end: overrides, logs, TensorBoard, kill -9 and resume, damaged checkpoints."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from configs import tiny
from conftest import REPO
from triplet_pose import checkpointing
from triplet_pose import config_files
from triplet_pose import train


def _launch(workdir, *overrides, wait=True):
  cmd = [sys.executable, "-m", "launch.train", "--config=configs/tiny.py",
         f"--workdir={workdir}", *overrides]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  if not wait:
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
  out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  return out.stderr


def test_launch_train_writes_logs_tensorboard_and_checkpoints(tmp_path):
  log = _launch(tmp_path, "--config.num_train_steps=6", "--config.log_every_steps=3",
                "--config.checkpoint_every_steps=3", "--config.eval_every_steps=6",
                "--config.optimizer.learning_rate=5e-4")
  assert "step 6/6" in log and "ETA" in log and "steps/s" in log
  config = json.loads((tmp_path / "config.json").read_text())
  assert config["optimizer"]["learning_rate"] == 5e-4
  records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  train_steps = [r["step"] for r in records if "train/loss" in r]
  assert train_steps == [3, 6]
  last = [r for r in records if "train/loss" in r][-1]
  assert {"train/loss_stack_1", "train/loss_stack_2", "train/learning_rate",
          "train/steps_per_sec", "train/eta_sec", "train/rss_mb"} <= set(last)
  assert 50 < last["train/rss_mb"] < 100_000  # MB, of a process that holds JAX
  assert any("eval/eval_loss" in r for r in records)
  assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
  assert checkpointing.Checkpointer(tmp_path, read_only=True).all_steps() == [3, 6]


def test_kill_9_then_restart_continues_exactly(tmp_path):
  killed = tmp_path / "killed"
  common = ["--config.checkpoint_every_steps=4", "--config.eval_every_steps=100000",
            "--config.log_every_steps=4"]
  proc = _launch(killed, "--config.num_train_steps=100000", *common, wait=False)
  ckpt_dir = killed / checkpointing.CHECKPOINT_DIR
  deadline = time.time() + 300
  try:
    while time.time() < deadline:
      done = [int(p.name) for p in ckpt_dir.glob("*") if p.name.isdigit()]
      if done and max(done) >= 8:
        break
      assert proc.poll() is None, proc.stdout.read()[-3000:]
      time.sleep(0.2)
    else:
      raise AssertionError("no checkpoint after 300 s")
  finally:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
  saved = checkpointing.Checkpointer(killed, read_only=True).latest_step()
  assert saved is not None and saved >= 8
  final = saved + 4
  log = _launch(killed, f"--config.num_train_steps={final}", *common)
  assert f"at step {saved}" in log, log[-2000:]
  assert f"steps {saved + 1}..{final}" in log

  # The same run without interruption ends with the same parameters.
  config = tiny.get_config()
  config.num_train_steps = final
  config.checkpoint_every_steps = 4
  config.eval_every_steps = 100000
  config.log_every_steps = 4
  reference = tmp_path / "reference"
  train.train_and_evaluate(config, reference)
  a = checkpointing.Checkpointer(killed, read_only=True).restore_raw_state(final)
  b = checkpointing.Checkpointer(reference, read_only=True).restore_raw_state(final)
  assert int(a["step"]) == int(b["step"]) == final
  for x, y in zip(jax.tree.leaves(a["params"]), jax.tree.leaves(b["params"])):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)
  for x, y in zip(jax.tree.leaves(a["opt_state"]), jax.tree.leaves(b["opt_state"])):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)


def test_checkpointer_keeps_newest_and_best(tmp_path):
  config = tiny.get_config()
  state = train.create_train_state(config, jax.random.key(0))
  for mode, best in (("min", 2), ("max", 4)):
    ckpt = checkpointing.Checkpointer(tmp_path / mode, keep=2, keep_best=1,
                                      best_metric="m", best_mode=mode)
    for step, value in ((1, 5.0), (2, 1.0), (3, None), (4, 9.0), (5, None), (6, None)):
      ckpt.save(step, state.replace(step=step), {"position": step},
                metrics=None if value is None else {"m": value})
    ckpt.wait_until_finished()
    assert ckpt.all_steps() == sorted({best, 5, 6})
    restored, input_state = ckpt.restore(state, step=best)
    assert int(restored.step) == best and input_state == {"position": best}
    ckpt.close()


def test_load_config_fills_fields_added_after_the_run(tmp_path):
  old = tiny.get_config().to_dict()
  del old["heatmap"]["foreground_weight"]  # a workdir written before the field existed
  old["model"]["num_features"] = 24
  (tmp_path / checkpointing.CONFIG_FILE).write_text(json.dumps(old))
  config = config_files.load_config(tmp_path)
  assert config.heatmap.foreground_weight == 0.0
  assert config.model.num_features == 24  # what the run wrote wins


def test_damaged_newest_checkpoint_is_set_aside_and_training_finishes(tmp_path):
  config = tiny.get_config()
  config.num_train_steps = 4
  config.checkpoint_every_steps = 2
  config.eval_every_steps = 100000
  config.log_every_steps = 2
  train.train_and_evaluate(config, tmp_path)
  # A failing disk overwrote the newest checkpoint's arrays.
  for f in (tmp_path / "checkpoints" / "4" / "state").rglob("*"):
    if f.is_file():
      f.write_bytes(b"garbage")
  log = _launch(tmp_path, "--config.num_train_steps=6",
                "--config.checkpoint_every_steps=2", "--config.eval_every_steps=100000",
                "--config.log_every_steps=2")
  aside = tmp_path / "checkpoints" / "4.corrupt"
  warning, = [l for l in log.splitlines() if "is damaged" in l]
  assert str(aside) in warning
  assert "at step 2" in log and "steps 3..6" in log
  assert aside.is_dir()
  assert checkpointing.Checkpointer(tmp_path, read_only=True).all_steps()[-1] == 6


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
  """A tiny run's workdir with checkpoints at steps 2 and 4, trained once."""
  config = tiny.get_config()
  config.num_train_steps = 4
  config.checkpoint_every_steps = 2
  config.eval_every_steps = 100000
  config.log_every_steps = 2
  workdir = tmp_path_factory.mktemp("two_checkpoints") / "w"
  train.train_and_evaluate(config, workdir)
  return workdir


_RESUME = ("--config.num_train_steps=6", "--config.checkpoint_every_steps=2",
           "--config.eval_every_steps=100000", "--config.log_every_steps=2")


def _damage(step_dir, pattern, how):
  """Damages the files of `step_dir` matching `pattern`; returns {path: bytes left}."""
  files = [f for f in step_dir.glob(pattern) if f.is_file()]
  assert files, pattern
  left = {}
  for i, f in enumerate(sorted(files)):
    if how == "delete":
      f.unlink()
    else:
      data = (np.random.default_rng(i).bytes(100) if how == "random"
              else f.read_bytes()[:f.stat().st_size // 2])
      f.write_bytes(data)
      left[f.relative_to(step_dir)] = data
  return left


def _log_lines(stderr):
  """absl's warning and error lines (`W1205 ...`, `E1205 ...`) and tracebacks."""
  return [l for l in stderr.splitlines()
          if re.match(r"[WEF]\d{4} ", l) or "Traceback" in l]


def test_damaged_only_checkpoint_stops_with_one_line_and_is_kept(two_checkpoints, tmp_path):
  """A run's only checkpoint, its array data overwritten with 100 random bytes."""
  workdir = tmp_path / "w"
  shutil.copytree(two_checkpoints, workdir)
  shutil.rmtree(workdir / "checkpoints" / "2")
  left = _damage(workdir / "checkpoints" / "4", "state/ocdbt.process_0/d/*", "random")
  proc = _launch(workdir, *_RESUME, wait=False)
  stderr, _ = proc.communicate(timeout=600)  # stdout and stderr together
  assert proc.returncode == 2, stderr[-3000:]
  assert "Traceback" not in stderr and not _log_lines(stderr), stderr[-3000:]
  line, = [l for l in stderr.splitlines() if l.startswith("launch.train: error: ")]
  assert "step 4 is damaged" in line and "Nothing was deleted" in line
  assert "starts from step 0" in line
  aside = workdir / "checkpoints" / "4.corrupt"
  assert str(aside) in line
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["4.corrupt"]
  for name, data in left.items():
    assert (aside / name).read_bytes() == data


@pytest.mark.parametrize("kind,how", [("state/_sharding", "truncate"),
                                      ("input/metadata", "delete")])
def test_damaged_newest_checkpoint_continues_from_the_older_in_one_line(
    two_checkpoints, tmp_path, kind, how):
  workdir = tmp_path / "w"
  shutil.copytree(two_checkpoints, workdir)
  left = _damage(workdir / "checkpoints" / "4", kind, how)
  log = _launch(workdir, *_RESUME)
  warning, = _log_lines(log)
  assert "step 4 is damaged" in warning and "continuing from step 2" in warning
  assert "at step 2" in log and "steps 3..6" in log
  aside = workdir / "checkpoints" / "4.corrupt"
  assert f"moved aside to {aside};" in warning
  for name, data in left.items():
    assert (aside / name).read_bytes() == data
  assert not (aside / kind).exists() if how == "delete" else (aside / kind).is_file()
  assert checkpointing.Checkpointer(workdir, read_only=True).all_steps()[-1] == 6
