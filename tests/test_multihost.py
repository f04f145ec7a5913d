"""Two `launch.train` processes on 127.0.0.1 train, evaluate and resume as one job.

JAX's distributed runtime runs on CPUs (gloo collectives), so two processes
with one CPU device each form a 2-device job. It is compared with one process
of two (fake) CPU devices: the same mesh, global batch and seed, so the
parameters after training and every evaluation figure must agree. Then one
of two processes is killed mid-run: the other must stop within a minute
naming it, and a restart of both must end where the uninterrupted job did.

Every process compiles the same few programs; a compilation cache shared by
the runs of this module lets the later runs skip most of that.
"""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO

pytestmark = pytest.mark.slow

STEPS = 12
# A small network, checkpoints every 2 steps, evaluation at 6 and 12.
_OVERRIDES = (
    "--config.model.num_stacks=1", "--config.model.num_features=16",
    "--config.model.stem_features=16", "--config.input.image_size=32",
    "--config.input.heatmap_size=8", f"--config.num_train_steps={STEPS}",
    "--config.checkpoint_every_steps=2", "--config.eval_every_steps=6",
    "--config.log_every_steps=2", "--config.eval_batches=4",
    "--config.keep_checkpoints=10")
_TIMEOUT_S = 600


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(devices: int, cache: pathlib.Path) -> dict[str, str]:
  env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
  env.update(JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             JAX_COMPILATION_CACHE_DIR=str(cache),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  return env


def _start(workdir: pathlib.Path, log: pathlib.Path, cache: pathlib.Path, *,
           process_id: int | None = None, port: int | None = None,
           devices: int = 1) -> subprocess.Popen:
  args = [sys.executable, "-m", "launch.train", "--config=configs/tiny.py",
          f"--workdir={workdir}", *_OVERRIDES]
  if process_id is not None:
    args += [f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
             f"--process_id={process_id}"]
  return subprocess.Popen(args, cwd=REPO, env=_env(devices, cache), stdout=log.open("w"),
                          stderr=subprocess.STDOUT)


def _start_pair(workdir: pathlib.Path, tag: str, cache: pathlib.Path
                ) -> tuple[list[subprocess.Popen], list[pathlib.Path]]:
  port = _free_port()
  logs = [workdir.parent / f"{tag}_{i}.log" for i in range(2)]
  return [_start(workdir, logs[i], cache, process_id=i, port=port) for i in range(2)], logs


def _wait(procs: list[subprocess.Popen], logs: list[pathlib.Path]) -> None:
  for proc, log in zip(procs, logs):
    try:
      proc.wait(timeout=_TIMEOUT_S)
    except subprocess.TimeoutExpired:
      for p in procs:
        p.kill()
      raise AssertionError(f"timed out:\n{log.read_text()[-3000:]}")
    assert proc.returncode == 0, log.read_text()[-3000:]


def _params(workdir: pathlib.Path) -> dict[str, np.ndarray]:
  """Flat {path: array} of the newest checkpoint's params and batch stats."""
  import jax  # pylint: disable=g-import-not-at-top  (after the subprocesses are set up)
  from triplet_pose import checkpointing  # pylint: disable=g-import-not-at-top
  raw = checkpointing.Checkpointer(workdir, read_only=True).restore_raw_state()
  leaves = jax.tree_util.tree_leaves_with_path(
      {"params": raw["params"], "batch_stats": raw["batch_stats"]})
  return {jax.tree_util.keystr(k): np.asarray(v) for k, v in leaves}


def _records(workdir: pathlib.Path) -> list[dict]:
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  return [json.loads(line) for line in lines]


def _eval_records(workdir: pathlib.Path) -> dict[int, dict[str, float]]:
  return {r["step"]: r for r in _records(workdir) if "eval/eval_loss" in r}


def _assert_same_params(a: dict, b: dict, rtol: float) -> None:
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_allclose(a[key], b[key], rtol=rtol, atol=rtol, err_msg=key)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Workdirs of the same training: two processes, and one process of two devices."""
  root = tmp_path_factory.mktemp("multihost")
  cache = root / "compilation_cache"
  two = root / "two_processes"
  procs, logs = _start_pair(two, "two", cache)
  one = root / "one_process"
  single = _start(one, root / "one.log", cache, devices=2)
  _wait(procs + [single], logs + [root / "one.log"])
  return {"two": two, "one": one, "logs": logs, "cache": cache}


def test_two_processes_train_and_evaluate_as_one(runs):
  two, one = runs["two"], runs["one"]
  _assert_same_params(_params(two), _params(one), rtol=1e-5)
  # Every evaluation figure (loss over the global batch, PCKh gathered from
  # both processes) is the one-process figure: the whole split, once.
  evals_two, evals_one = _eval_records(two), _eval_records(one)
  assert sorted(evals_two) == sorted(evals_one) == [6, STEPS]
  for step, record in evals_one.items():
    assert evals_two[step].keys() == record.keys()
    assert any(k.startswith("eval/pckh_") for k in record)
    for key, value in record.items():
      assert evals_two[step][key] == pytest.approx(value, rel=1e-5, abs=1e-6), (step, key)
  # Only process 0 writes: one record per logged step, as with one process,
  # and process 1 logs no progress lines.
  assert len(_records(two)) == len(_records(one))
  assert "step 6/" in runs["logs"][0].read_text()
  assert "step 6/" not in runs["logs"][1].read_text()


def test_killed_process_stops_the_other_and_restart_resumes(runs, tmp_path):
  workdir = tmp_path / "killed"
  procs, logs = _start_pair(workdir, "killed", runs["cache"])
  first = workdir / "checkpoints" / "2"
  deadline = time.monotonic() + _TIMEOUT_S
  while not first.is_dir():
    assert procs[1].poll() is None, logs[1].read_text()[-3000:]
    assert time.monotonic() < deadline, "no checkpoint"
    time.sleep(0.1)
  assert procs[0].poll() is None, "finished before the kill: nothing was tested"
  procs[1].send_signal(signal.SIGKILL)
  killed_at = time.monotonic()
  try:
    procs[0].wait(timeout=60)
  except subprocess.TimeoutExpired:
    procs[0].kill()
    raise AssertionError(f"still running 60 s after its peer died:\n"
                         f"{logs[0].read_text()[-3000:]}")
  output = logs[0].read_text()
  assert procs[0].returncode != 0
  assert "lost process 1" in output, output[-3000:]
  print(f"survivor stopped {time.monotonic() - killed_at:.1f} s after the kill")
  assert f"step {STEPS}/{STEPS}" not in output  # it did stop mid-run

  procs, logs = _start_pair(workdir, "restarted", runs["cache"])
  _wait(procs, logs)
  assert "resumed from" in logs[0].read_text()
  _assert_same_params(_params(workdir), _params(runs["two"]), rtol=1e-6)
