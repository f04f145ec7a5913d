"""`MultiPersonAp` in a job of two processes on 127.0.0.1: each process sees
half of the images (every other one, as the input pipeline splits a split),
and both report what one process reports over all of them.

The images hold 1 to 3 persons each (padded to 4) and 0 to 4 predicted
persons, so what is gathered is ragged; scores are rounded so that ties
make the AP depend on the order of the images too. Run as a script, this
module is one of the two processes (`_worker`).
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO

pytestmark = pytest.mark.slow

NUM_IMAGES, MAX_PERSONS, K = 13, 4, 16
_TIMEOUT_S = 300


def _images(seed: int = 0) -> list[dict]:
  """Per image: a scene's ground truth (padded) and predicted persons."""
  rng = np.random.default_rng(seed)
  images = []
  for i in range(NUM_IMAGES):
    n = int(rng.integers(1, 4))
    joints = np.zeros((MAX_PERSONS, K, 2), np.float32)
    joints[:n] = rng.uniform(10, 120, (n, K, 2))
    visible = np.zeros((MAX_PERSONS, K), np.float32)
    visible[:n] = rng.uniform(size=(n, K)) > 0.15
    occlusion = np.full((MAX_PERSONS, K), -1, np.int32)
    occlusion[:n] = rng.choice([0, 0, 0, 2, 3], size=(n, K))
    found = rng.permutation(n)[:int(rng.integers(0, n + 1))]
    persons = joints[found] + rng.normal(0, 3, (len(found), K, 2))
    extra = rng.uniform(10, 120, (int(rng.integers(0, 2)), K, 2))  # false positives
    xy = np.concatenate([persons, extra])
    scores = np.round(rng.uniform(0.2, 1, (len(xy), K, 1)), 1)  # ties across images
    ceiling = joints[:n] + rng.normal(0, 2, (n, K, 2))
    images.append({
        "image": np.zeros((128, 128, 3), np.uint8), "joints": joints, "joints_visible": visible,
        "joints_occlusion": occlusion, "head_size": np.full(MAX_PERSONS, 8.0, np.float32),
        "persons_valid": np.arange(MAX_PERSONS) < n, "num_persons": np.int32(n),
        "crowd_index": np.float32(rng.choice([0.0, 0.5, 1.0])),
        "crop_to_original": np.array([[2.0, 0, 7], [0, 2.0, 3]], np.float32),
        "persons": np.concatenate([xy, scores], -1),
        "ceiling": np.concatenate([ceiling, np.ones((n, K, 1))], -1)})
  return images


def _report(images: list[dict], batch_size: int) -> dict:
  """`MultiPersonAp.report()` of `images` fed in padded batches, as JSON would hold it."""
  from triplet_pose.evaluators import multi_person  # pylint: disable=g-import-not-at-top
  metric = multi_person.MultiPersonAp()
  for start in range(0, max(len(images), 1), batch_size):
    chunk = images[start:start + batch_size]
    rows = chunk + [images[0]] * (batch_size - len(chunk))  # padding, valid False
    batch = {k: np.stack([r[k] for r in rows]) for k in rows[0] if k not in ("persons",
                                                                              "ceiling")}
    batch["valid"] = np.arange(batch_size) < len(chunk)
    metric.update(batch, {k: [r[k] for r in rows] for k in ("persons", "ceiling")})
  return json.loads(json.dumps(metric.report()))


def _worker(process_id: int, port: int, out: str) -> None:
  from triplet_pose import parallel  # pylint: disable=g-import-not-at-top
  parallel.initialize_distributed(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                                  process_id=process_id)
  report = _report(_images()[process_id::2], batch_size=2)
  pathlib.Path(out).write_text(json.dumps(report))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_report_what_one_reports(tmp_path):
  env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
  env.update(JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
  port = _free_port()
  outs = [tmp_path / f"report_{i}.json" for i in range(2)]
  logs = [tmp_path / f"process_{i}.log" for i in range(2)]
  procs = [subprocess.Popen([sys.executable, __file__, str(i), str(port), str(outs[i])],
                            cwd=REPO, env=env, stdout=logs[i].open("w"),
                            stderr=subprocess.STDOUT) for i in range(2)]
  for proc, log in zip(procs, logs):
    try:
      proc.wait(timeout=_TIMEOUT_S)
    except subprocess.TimeoutExpired:
      for p in procs:
        p.kill()
      raise AssertionError(f"timed out:\n{log.read_text()[-3000:]}")
    assert proc.returncode == 0, log.read_text()[-3000:]
  expected = _report(_images(), batch_size=4)
  assert expected["images"] == NUM_IMAGES and 0 < expected["map"] < 100
  assert expected["by_occlusion"] and len(expected["by_crowd"]) > 1
  for out in outs:
    np.testing.assert_equal(json.loads(out.read_text()), expected)


if __name__ == "__main__":
  _worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
