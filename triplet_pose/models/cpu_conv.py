"""Stride-1 'same' convolutions whose training step is fast on XLA:CPU.

The train step of the stacked hourglass on a CPU spends most of its time in
the convolutions' weight gradients, because of how XLA:CPU lowers them (jaxlib
0.10): JAX writes dW as a convolution whose window is the whole feature map,
which the CPU backend runs through YNNPACK several times slower than the
forward pass, after transposing both operands in fusions that also recompute
the batch norm before them (see benchmarks/train_step.py for the figures).

`conv2d(..., impl='cpu_vjp')` computes the same values with a custom VJP:

* 1x1: the forward pass and dx are matrix products over the channels, and
  dW = x^T dy is one matrix product contracting over batch and pixels.
* kxk: the forward pass and dx stay XLA convolutions (fast on the CPU), and
  dW is k*k matrix products of shifted views of x with dy ("taps").

Results equal `lax.conv_general_dilated` up to float rounding. `impl='auto'`
uses it only on the CPU backend; GPUs and TPUs keep XLA's own convolution
gradients (cuDNN and friends are fast there). Models choose per instance
(`StackedHourglass(conv_impl=...)`), so A/B comparisons need no global
switch. The custom VJP supports reverse mode only (`jax.grad`, `jax.vjp`), not
`jax.jvp`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

IMPLS = ("auto", "xla", "cpu_vjp")
_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def conv2d(x: jax.Array, kernel: jax.Array, *, stride: int = 1,
           impl: str = "auto") -> jax.Array:
  """NHWC x HWIO convolution with symmetric (k-1)/2 zero padding, no bias.

  Args:
    x: (B, H, W, C_in) input.
    kernel: (k, k, C_in, C_out) kernel, k odd.
    stride: spatial stride; strides other than 1 always use XLA's gradient.
    impl: 'xla' (`lax.conv_general_dilated` and its autodiff), 'cpu_vjp' (the
      custom VJP above) or 'auto' ('cpu_vjp' when the default backend is the
      CPU, 'xla' elsewhere).

  Returns:
    (B, H/stride, W/stride, C_out).

  Raises:
    ValueError: for an unknown `impl`.
  """
  if impl not in IMPLS:
    raise ValueError(f"conv2d impl must be one of {IMPLS}, got {impl!r}")
  if impl == "auto":
    impl = "cpu_vjp" if jax.default_backend() == "cpu" else "xla"
  if impl == "xla" or stride != 1 or kernel.shape[0] % 2 == 0:
    return _xla_conv(x, kernel, stride)
  return _conv_same(x, kernel)


def _xla_conv(x, kernel, stride=1):
  pad = (kernel.shape[0] - 1) // 2
  return lax.conv_general_dilated(x, kernel, (stride, stride), ((pad, pad), (pad, pad)),
                                  dimension_numbers=_DIMENSIONS)


def _dot_channels(x, matrix):
  """x (..., C) @ matrix (C, D) -> (..., D)."""
  return lax.dot_general(x, matrix, (((x.ndim - 1,), (0,)), ((), ())))


def _forward(x, kernel):
  if kernel.shape[0] == 1:
    return _dot_channels(x, kernel[0, 0])
  return _xla_conv(x, kernel)


@jax.custom_vjp
def _conv_same(x, kernel):
  return _forward(x, kernel)


def _conv_same_fwd(x, kernel):
  return _forward(x, kernel), (x, kernel)


def _conv_same_bwd(residuals, dy):
  x, kernel = residuals
  k = kernel.shape[0]
  n = x.shape[0] * x.shape[1] * x.shape[2]
  dy2 = dy.reshape(n, dy.shape[-1])
  contract_rows = (((0,), (0,)), ((), ()))
  if k == 1:
    dx = _dot_channels(dy, kernel[0, 0].T)
    dw = lax.dot_general(x.reshape(n, x.shape[-1]), dy2, contract_rows)[None, None]
  else:
    # The transpose of a stride-1 'same' convolution: the flipped kernel with
    # in/out swapped, same padding.
    dx = _xla_conv(dy, jnp.flip(kernel, (0, 1)).swapaxes(2, 3))
    pad = (k - 1) // 2
    h, w = x.shape[1:3]
    xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    taps = []
    for i in range(k):
      for j in range(k):
        # One shifted copy of x at a time, made after the previous tap's dot
        # (and after dy): otherwise XLA computes all k*k copies in the forward
        # pass, as soon as x exists, and keeps them alive until here.
        window = _after(xp[:, i:i + h, j:j + w], taps[-1] if taps else dy)
        taps.append(lax.dot_general(window.reshape(n, x.shape[-1]), dy2,
                                    contract_rows))
    dw = jnp.stack(taps).reshape(k, k, *taps[0].shape)
  return dx.astype(x.dtype), dw.astype(kernel.dtype)


_conv_same.defvjp(_conv_same_fwd, _conv_same_bwd)


def _after(x: jax.Array, dependency: jax.Array) -> jax.Array:
  """`x`, computed only once `dependency` exists.

  XLA:CPU removes `lax.optimization_barrier` before scheduling, so the order
  is forced by data instead: x + 0 * (an element of `dependency`), which the
  compiler must keep (0 * inf is not 0) and fuses into x's producer for free.
  """
  zero = dependency.reshape(-1)[0].astype(x.dtype) * 0
  return x + zero
