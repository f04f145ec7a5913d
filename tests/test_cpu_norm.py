"""BatchNormReLU equals nn.relu(nn.BatchNorm(...)) in values, statistics and gradients."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from triplet_pose.models import cpu_norm


class _FlaxReference(nn.Module):
  """What hourglass.py used before: Flax's batch norm, then a ReLU."""
  use_running_average: bool
  relu: bool = True

  @nn.compact
  def __call__(self, x):
    y = nn.BatchNorm(use_running_average=self.use_running_average,
                     momentum=0.9, epsilon=1e-5, use_fast_variance=False,
                     name="bn")(x)
    return nn.relu(y) if self.relu else y


class _Fused(nn.Module):
  use_running_average: bool
  relu: bool = True

  @nn.compact
  def __call__(self, x):
    return cpu_norm.BatchNormReLU(use_running_average=self.use_running_average,
                                  relu=self.relu, name="bn")(x)


def _inputs(offset: float = 0.0, shape=(3, 6, 5, 8)):
  kx, ks, kb, km, kv, kw = jax.random.split(jax.random.key(0), 6)
  c = shape[-1]
  x = 1.7 * jax.random.normal(kx, shape) + offset + jnp.arange(c) * 0.3
  params = {"bn": {"scale": 1.0 + 0.5 * jax.random.normal(ks, (c,)),
                   "bias": 0.5 * jax.random.normal(kb, (c,))}}
  stats = {"bn": {"mean": jax.random.normal(km, (c,)) + offset,
                  "var": jax.random.uniform(kv, (c,), minval=0.5, maxval=3.0)}}
  weights = jax.random.normal(kw, shape)
  return x, params, stats, weights


def test_variables_have_flax_layout():
  x = jnp.zeros((2, 4, 4, 8))
  ref = _FlaxReference(False).init(jax.random.key(0), x)
  ours = _Fused(False).init(jax.random.key(0), x)
  assert (jax.tree.map(lambda a: (a.shape, a.dtype), ref)
          == jax.tree.map(lambda a: (a.shape, a.dtype), ours))
  np.testing.assert_array_equal(ours["params"]["bn"]["scale"], 1.0)
  np.testing.assert_array_equal(ours["batch_stats"]["bn"]["var"], 1.0)


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("offset", [0.0, 300.0])
def test_train_forward_and_running_stats(relu, offset):
  x, params, stats, _ = _inputs(offset)
  variables = {"params": params, "batch_stats": stats}
  want, want_upd = _FlaxReference(False, relu).apply(
      variables, x, mutable=["batch_stats"])
  got, got_upd = _Fused(False, relu).apply(variables, x, mutable=["batch_stats"])
  # Near 300 a float32 mean is only defined to ~3e-5 (one ulp), which shifts
  # a whole channel of the output by up to that over the std.
  atol = 2e-5 if offset == 0.0 else 1e-4
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=atol)
  for name in ("mean", "var"):
    np.testing.assert_allclose(got_upd["batch_stats"]["bn"][name],
                               want_upd["batch_stats"]["bn"][name],
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("relu", [True, False])
def test_eval_forward(relu):
  x, params, stats, _ = _inputs()
  variables = {"params": params, "batch_stats": stats}
  want = _FlaxReference(True, relu).apply(variables, x)
  got = _Fused(True, relu).apply(variables, x)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("train", [True, False])
def test_gradients_match_flax(relu, train):
  x, params, stats, weights = _inputs(offset=2.0)

  def loss(module, params, x):
    y = module.apply({"params": params, "batch_stats": stats}, x,
                     mutable=["batch_stats"])[0]
    return jnp.sum(jnp.sin(y) * weights)

  grad = jax.jit(jax.grad(loss, argnums=(1, 2)), static_argnums=0)
  want_p, want_x = grad(_FlaxReference(not train, relu), params, x)
  got_p, got_x = grad(_Fused(not train, relu), params, x)
  np.testing.assert_allclose(got_x, want_x, rtol=1e-4, atol=1e-5)
  for name in ("scale", "bias"):
    np.testing.assert_allclose(got_p["bn"][name], want_p["bn"][name],
                               rtol=1e-4, atol=1e-4)


def test_statistics_cotangents():
  """The returned mean and variance are differentiable too (not only y)."""
  x, params, _, weights = _inputs(offset=1.0, shape=(4, 3, 6))
  scale, bias = params["bn"]["scale"], params["bn"]["bias"]

  def reference(x, scale, bias):
    mean = jnp.mean(x, axis=(0, 1))
    var = jnp.mean(jnp.square(x - mean), axis=(0, 1))
    y = jax.nn.relu((x - mean) * jax.lax.rsqrt(var + 1e-5) * scale + bias)
    return y, mean, var

  cts = (weights, jnp.linspace(-1.0, 1.0, 6), jnp.linspace(2.0, -0.5, 6))
  _, vjp_want = jax.vjp(reference, x, scale, bias)
  _, vjp_got = jax.vjp(cpu_norm.batch_norm_relu_train, x, scale, bias)
  for got, want in zip(vjp_got(cts), vjp_want(cts)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
