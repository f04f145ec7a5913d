"""Batch norm followed by ReLU, with a hand-written backward pass.

Every batch norm of the stacked hourglass is followed by a ReLU. Autodiff of
`nn.relu(nn.BatchNorm(...)(x))` in training mode gives XLA:CPU a chain of
element-wise passes and reductions over the activation (the profile of
benchmarks/train_step.py puts batch norm and element-wise code at about a
third of the step). `BatchNormReLU` computes the same values with:

* forward: per-channel sum and sum of squares in one pass (float32, after
  subtracting one sample per channel so that a large mean does not cancel
  the variance), then one element-wise pass for the output;
* backward: the closed form of the batch-norm gradient with the ReLU mask,
  g = dy * (y > 0), dbias = sum(g), dscale = sum(g * xhat) (one pass) and
  dx = scale * rstd * (g - mean(g) - xhat * mean(g * xhat)) (one pass).

Parameters and statistics keep `nn.BatchNorm`'s layout (params `scale`,
`bias`; batch_stats `mean`, `var`, the biased batch variance as in Flax), so
checkpoints and `torch_import` are unaffected. The custom VJP supports
reverse mode only (`jax.grad`, `jax.vjp`), not `jax.jvp`.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def _stats(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per-channel mean and biased variance of float32 `x` (..., C), one pass."""
  x2 = x.reshape(-1, x.shape[-1])
  # Shifting by one sample keeps the moments small when |mean| >> std, where
  # E[x^2] - E[x]^2 would cancel in float32.
  d = x2 - jax.lax.stop_gradient(x2[0])
  n = x2.shape[0]
  s1 = jnp.sum(d, axis=0) / n
  s2 = jnp.sum(d * d, axis=0) / n
  return x2[0] + s1, jnp.maximum(s2 - s1 * s1, 0.0)


def _forward(x, scale, bias, eps, relu):
  xf = x.astype(jnp.float32)
  mean, var = _stats(xf)
  rstd = jax.lax.rsqrt(var + eps)
  mul = scale * rstd
  # (x - mean) first, as Flax does: x * mul - mean * mul cancels when
  # |mean| >> std.
  y = (xf - mean) * mul + bias
  if relu:
    y = jnp.maximum(y, 0.0)
  return y.astype(x.dtype), mean, var, rstd


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _bn_relu_train(x, scale, bias, eps, relu):
  y, mean, var, _ = _forward(x, scale, bias, eps, relu)
  return y, mean, var


def _bn_relu_train_fwd(x, scale, bias, eps, relu):
  y, mean, var, rstd = _forward(x, scale, bias, eps, relu)
  # x and y stay alive anyway (y is the next convolution's input, whose weight
  # gradient needs it); only per-channel vectors are added.
  return (y, mean, var), (x, y, scale, mean, rstd)


def _bn_relu_train_bwd(eps, relu, res, cts):
  del eps  # rstd already holds it
  x, y, scale, mean, rstd = res
  dy, dmean, dvar = cts
  axes = tuple(range(x.ndim - 1))
  n = x.size // x.shape[-1]
  xhat = (x.astype(jnp.float32) - mean) * rstd
  g = dy.astype(jnp.float32)
  if relu:
    g = jnp.where(y > 0, g, 0.0)
  dbias = jnp.sum(g, axis=axes)
  dscale = jnp.sum(g * xhat, axis=axes)
  # dx = a * g + b + c * xhat, with per-channel a, b, c. The cotangents of the
  # returned statistics (zero in a loss, which only sees y) are folded into b
  # and c: d mean / dx = 1/n, d var / dx = 2 (x - mean) / n = 2 xhat / (n rstd).
  a = scale * rstd
  b = -a * dbias / n + dmean / n
  c = -a * dscale / n + 2.0 * dvar / (n * rstd)
  dx = (a * g + b + c * xhat).astype(x.dtype)
  return dx, dscale.astype(scale.dtype), dbias.astype(scale.dtype)


_bn_relu_train.defvjp(_bn_relu_train_fwd, _bn_relu_train_bwd)


def batch_norm_relu_train(x: jax.Array, scale: jax.Array, bias: jax.Array, *,
                          eps: float = 1e-5, relu: bool = True
                          ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Training-mode batch norm (+ ReLU) over all axes but the last.

  Args:
    x: (..., C) input, any float dtype; statistics are computed in float32.
    scale: (C,) float32 scale.
    bias: (C,) float32 bias.
    eps: added to the variance.
    relu: apply max(., 0) to the output (its mask is fused into the backward).

  Returns:
    (y, mean, var): y of x's dtype and shape; the float32 batch mean and
    biased batch variance, shape (C,).
  """
  return _bn_relu_train(x, scale, bias, eps, relu)


class BatchNormReLU(nn.Module):
  """`nn.relu(nn.BatchNorm(...)(x))` with the same variables, fused backward.

  Attributes:
    use_running_average: normalise with the running statistics (eval mode).
    momentum: Flax's momentum of the running averages (0.9 = PyTorch's 0.1).
    epsilon: added to the variance.
    dtype: output dtype (statistics are float32).
    relu: apply the ReLU (False: plain batch norm).
  """
  use_running_average: bool
  momentum: float = 0.9
  epsilon: float = 1e-5
  dtype: Any = jnp.float32
  relu: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    shape = (x.shape[-1],)
    scale = self.param("scale", nn.initializers.ones_init(), shape, jnp.float32)
    bias = self.param("bias", nn.initializers.zeros_init(), shape, jnp.float32)
    ra_mean = self.variable("batch_stats", "mean",
                            lambda s: jnp.zeros(s, jnp.float32), shape)
    ra_var = self.variable("batch_stats", "var",
                           lambda s: jnp.ones(s, jnp.float32), shape)
    if self.use_running_average:
      mul = scale * jax.lax.rsqrt(ra_var.value + self.epsilon)
      y = (x.astype(jnp.float32) - ra_mean.value) * mul + bias
      if self.relu:
        y = jnp.maximum(y, 0.0)
      return y.astype(self.dtype)
    y, mean, var = batch_norm_relu_train(x, scale, bias,
                                         eps=self.epsilon, relu=self.relu)
    if not self.is_initializing():
      m = self.momentum
      ra_mean.value = m * ra_mean.value + (1.0 - m) * mean
      ra_var.value = m * ra_var.value + (1.0 - m) * var
    return y.astype(self.dtype)
