"""launch.train end to end: config overrides, logs, TensorBoard, kill -9 and resume."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np

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
