"""JAX's persistent compilation cache as launch/ turns it on: a second process compiles nothing.

Each case runs fresh processes with `$TRIPLET_POSE_CACHE_DIR` in a temporary
folder, so the user's cache is neither read nor written.
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

# A tiny model's init and gradient, compiled with the cache as
# launch.common.set_up_process sets it; prints JAX's cache events.
_PROBE = r"""
import json
import jax
import jax.numpy as jnp
from jax import monitoring

events = {}
monitoring.register_event_listener(
    lambda name, **kw: events.__setitem__(name, events.get(name, 0) + 1))
from launch import common
folder = common.enable_compilation_cache()
from triplet_pose.models import StackedHourglass
model = StackedHourglass(2, 8, 3, hourglass_depth=1, stem_features=8)
x = jnp.ones((2, 16, 16, 3))
variables = jax.jit(model.init)(jax.random.key(0), x)

def loss(params):
  out, _ = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x,
                       train=True, mutable=["batch_stats"])
  return out["joints"].sum()

jax.block_until_ready(jax.jit(jax.grad(loss))(variables["params"]))
print("RESULT " + json.dumps({
    "folder": folder and str(folder),
    "requests": events.get("/jax/compilation_cache/compile_requests_use_cache", 0),
    "hits": events.get("/jax/compilation_cache/cache_hits", 0),
    "misses": events.get("/jax/compilation_cache/cache_misses", 0)}))
"""


def _env(cache, **extra):
  return dict(os.environ, JAX_PLATFORMS="cpu", TRIPLET_POSE_CACHE_DIR=str(cache), **extra)


def _probe(cache, **extra):
  out = subprocess.run([sys.executable, "-c", _PROBE], cwd=REPO, env=_env(cache, **extra),
                       capture_output=True, text=True, timeout=600, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  (line,) = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
  return json.loads(line[len("RESULT "):])


def _entries(folder):
  return sorted(p.name for p in folder.rglob("*-cache"))


def test_a_second_process_loads_every_program_from_the_cache(tmp_path):
  first = _probe(tmp_path)
  folder = tmp_path / "jax"
  assert first["folder"].startswith(str(folder))
  assert first["requests"] >= 2 and first["hits"] == 0 and first["misses"] == first["requests"]
  written = _entries(folder)
  # Every program is kept, even those that compile in milliseconds.
  assert len(written) == first["requests"], written
  second = _probe(tmp_path)
  assert second["requests"] == first["requests"]
  assert second["hits"] == second["requests"] and second["misses"] == 0
  assert _entries(folder) == written


def test_the_cache_can_be_turned_off(tmp_path):
  off = _probe(tmp_path, TRIPLET_POSE_COMPILATION_CACHE="0")
  assert off["folder"] is None and off["hits"] == off["misses"] == 0
  assert not (tmp_path / "jax").exists()


@pytest.mark.slow
def test_a_resumed_training_run_compiles_nothing(tmp_path):
  """launch.train, then the same run resumed for more steps: every compile is a cache hit."""
  workdir = tmp_path / "run"

  def train(steps):
    cmd = [sys.executable, "-m", "launch.train", "--config=configs/tiny.py",
           f"--workdir={workdir}", f"--config.num_train_steps={steps}",
           "--config.eval_every_steps=2", "--config.checkpoint_every_steps=2"]
    # JAX logs each persistent-cache hit (log_compiles) and miss (explain_cache_misses).
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                         env=_env(tmp_path / "cache", JAX_LOG_COMPILES="1",
                                  JAX_EXPLAIN_CACHE_MISSES="1"), check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return (out.stderr.count("Persistent compilation cache hit"),
            out.stderr.count("PERSISTENT COMPILATION CACHE MISS"), out.stderr)

  hits, misses, _ = train(2)
  assert misses > 0 and hits == 0
  hits, misses, log = train(4)
  assert "at step 2" in log, log[-2000:]
  misses_named = [l for l in log.splitlines() if "PERSISTENT COMPILATION CACHE MISS" in l]
  assert hits > 0 and misses == 0, misses_named
