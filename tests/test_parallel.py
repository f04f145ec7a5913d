"""Data parallelism: the sharded train step equals the single-device step.

The step runs in a fresh process with 8 fake CPU devices
(XLA_FLAGS=--xla_force_host_platform_device_count=8). Several processes are
tested in test_multihost.py.
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from triplet_pose import parallel

_SCRIPT = r"""
import functools, json
import jax, jax.numpy as jnp, numpy as np, optax
from jax.flatten_util import ravel_pytree
from configs import tiny
from triplet_pose import data, parallel, train

assert jax.device_count() == 8, jax.devices()
config = tiny.get_config()
config.input.batch_size = 8
state = train.create_train_state(config, jax.random.key(0))
# Plain SGD: Adam turns the rounding noise of exactly-zero gradients (the bias
# of a convolution followed by batch norm) into full-size steps.
state = train.TrainState.create(apply_fn=state.apply_fn, params=state.params,
                                batch_stats=state.batch_stats, tx=optax.sgd(0.01))
it = data.create_iterator(config.input, split="train", batch_size=8, seed=0)
batches = [next(it) for _ in range(2)]
step = jax.jit(functools.partial(train.train_step, config=config))
mesh = parallel.create_mesh()
cpu0 = jax.devices()[0]

def rel(a, b):
  a, _ = ravel_pytree(jax.device_get(a))
  b, _ = ravel_pytree(jax.device_get(b))
  return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(a))

def grads(state, batch):
  return jax.grad(lambda p: step(state.replace(params=p), batch, jax.random.key(0))[1]["loss"])(state.params)

single, sharded = jax.device_put(state, cpu0), parallel.replicate(state, mesh)
b0 = parallel.shard_batch(batches[0], mesh)
assert len(b0["image"].sharding.device_set) == 8
grad_rel = rel(grads(single, jax.device_put(batches[0], cpu0)), grads(sharded, b0))
losses = []
for i, b in enumerate(batches):
  rng = jax.random.key(i)
  single, m1 = step(single, jax.device_put(b, cpu0), rng)
  sharded, m8 = step(sharded, parallel.shard_batch(b, mesh), rng)
  losses.append((float(m1["loss"]), float(m8["loss"])))
try:
  parallel.check_batch_size(12, mesh)
  bad = None
except ValueError as e:
  bad = str(e)
leaf = jax.tree.leaves(sharded.params)[0]
print("RESULT", json.dumps(dict(
    losses=losses, grad_rel=grad_rel, param_rel=rel(single.params, sharded.params),
    stats_rel=rel(single.batch_stats, sharded.batch_stats),
    replicated=leaf.sharding.is_fully_replicated, bad=bad)))
"""


def test_sharded_step_equals_single_device_step():
  # The native CPU kernels have no second derivative inside the scanned
  # stacks (JAX inlines their custom_jvp when it partially evaluates the
  # scan), and `grads` differentiates a train step; XLA's convolutions do.
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu", TRIPLET_POSE_NATIVE_KERNELS="0")
  out = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  line = next(l for l in out.stdout.splitlines() if l.startswith("RESULT"))
  result = json.loads(line[len("RESULT "):])
  # Same batch-norm statistics and loss: the first loss agrees to float32
  # rounding. The backward pass through batch norm sums in a different order
  # over 8 devices, so gradients agree to ~1e-3 relative, not bitwise.
  single, sharded = result["losses"][0]
  assert abs(single - sharded) <= 1e-5 * abs(single)
  for single, sharded in result["losses"]:
    assert abs(single - sharded) <= 1e-3 * abs(single)
  assert result["grad_rel"] < 2e-3
  assert result["param_rel"] < 1e-4
  assert result["stats_rel"] < 1e-3
  assert result["replicated"]
  assert "divisible by the 8 devices" in result["bad"]


def test_process_states_round_trip_and_check_the_process_count():
  state = {"position": 7}
  saved = parallel.gather_process_states(state)
  assert saved == {"process_count": 1, "processes": [state]}
  assert parallel.own_process_state(json.loads(json.dumps(saved))) == state
  assert parallel.own_process_state(state) == state  # saved before per-process states
  with pytest.raises(ValueError, match="2 processes, this job has 1"):
    parallel.own_process_state({"processes": [state, state]})
  assert parallel.lost_processes() == []
  assert parallel.raise_if_process_lost(RuntimeError("Gloo all-reduce failed")) is None
