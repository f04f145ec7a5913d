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

`impl='native'` is the same custom VJP computed by C++ kernels that XLA
calls through its FFI (`native_kernels`, built on the machine on first use):
every weight gradient (1x1, kxk, and strided ones such as the image stem's
7x7), several times faster than the taps, every forward pass, and dx of the
stride-1 convolutions (~1.2x faster than XLA's for 3x3, up to 2x for narrow
1x1 and the strided stem); about as fast as oneDNN's in PyTorch
(`benchmarks/conv_grads.py`). A part whose output channels are not a
multiple of the kernels' vector width keeps the 'cpu_vjp' code (stride 1) or
XLA's convolution and gradient (other strides).

Results equal `lax.conv_general_dilated` up to float rounding. `impl='auto'`
uses 'native' on the CPU backend when the native kernels are available
(`native_kernels.available()`), else 'cpu_vjp'; GPUs and TPUs keep XLA's own
convolution gradients (cuDNN and friends are fast there). Models choose per
instance (`StackedHourglass(conv_impl=...)`), so A/B comparisons need no
global switch. The custom VJP supports reverse mode only (`jax.grad`,
`jax.vjp`), not `jax.jvp`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from triplet_pose.models import native_kernels

IMPLS = ("auto", "xla", "cpu_vjp", "native")
_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def conv2d(x: jax.Array, kernel: jax.Array, *, stride: int = 1,
           impl: str = "auto") -> jax.Array:
  """NHWC x HWIO convolution with symmetric (k-1)/2 zero padding, no bias.

  Args:
    x: (B, H, W, C_in) input.
    kernel: (k, k, C_in, C_out) kernel, k odd.
    stride: spatial stride; with 'cpu_vjp', strides other than 1 use XLA's
      gradient.
    impl: 'xla' (`lax.conv_general_dilated` and its autodiff), 'cpu_vjp' or
      'native' (the custom VJPs above) or 'auto' ('native' on the CPU backend
      where it is available, else 'cpu_vjp'; 'xla' on other backends).

  Returns:
    (B, H/stride, W/stride, C_out).

  Raises:
    ValueError: for an unknown `impl`, or 'native' where the native kernels
      are unavailable (the message says why).
  """
  if impl not in IMPLS:
    raise ValueError(f"conv2d impl must be one of {IMPLS}, got {impl!r}")
  if impl == "auto":
    if jax.default_backend() != "cpu":
      impl = "xla"
    else:
      impl = "native" if native_kernels.available() else "cpu_vjp"
  if impl == "native" and not native_kernels.available():
    raise ValueError("conv2d impl='native': native CPU kernels unavailable: "
                     f"{native_kernels.unavailable_reason()}")
  native = impl == "native"
  if (impl == "xla" or kernel.shape[0] % 2 == 0
      or (stride != 1 and not (native and native_kernels.supports(kernel.shape[-1])))):
    return _xla_conv(x, kernel, stride)
  return _conv_custom_vjp(x, kernel, stride, native)


def _xla_conv(x, kernel, stride=1):
  pad = (kernel.shape[0] - 1) // 2
  return lax.conv_general_dilated(x, kernel, (stride, stride), ((pad, pad), (pad, pad)),
                                  dimension_numbers=_DIMENSIONS)


def _dot_channels(x, matrix):
  """x (..., C) @ matrix (C, D) -> (..., D)."""
  return lax.dot_general(x, matrix, (((x.ndim - 1,), (0,)), ((), ())))


def _forward(x, kernel, stride, native):
  if native and native_kernels.supports(kernel.shape[-1]):
    return native_kernels.conv_forward(x, kernel, stride=stride).astype(x.dtype)
  if kernel.shape[0] == 1 and stride == 1:
    return _dot_channels(x, kernel[0, 0])
  return _xla_conv(x, kernel, stride)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_custom_vjp(x, kernel, stride, native):
  return _forward(x, kernel, stride, native)


def _conv_custom_vjp_fwd(x, kernel, stride, native):
  return _forward(x, kernel, stride, native), (x, kernel)


def _conv_custom_vjp_bwd(stride, native, residuals, dy):
  x, kernel = residuals
  k = kernel.shape[0]
  pad = (k - 1) // 2
  if stride != 1:
    # Only 'native' comes here (see conv2d); XLA's own input gradient. (The
    # image stem's input is the image: its gradient is dead code.)
    dx = jax.vjp(lambda x: _xla_conv(x, kernel, stride), x)[1](dy)[0]
  else:
    # The transpose of a stride-1 'same' convolution: the flipped kernel with
    # in/out swapped, same padding (for 1x1: a product with the transposed
    # matrix).
    dx = _forward(dy, jnp.flip(kernel, (0, 1)).swapaxes(2, 3), 1, native)
  if native and native_kernels.supports(dy.shape[-1]):
    dw = native_kernels.conv_weight_grad(x, dy, kernel_size=k, stride=stride, pad=pad)
  else:
    dw = _weight_grad_by_taps(x, dy, k)
  return dx.astype(x.dtype), dw.astype(kernel.dtype)


def _weight_grad_by_taps(x, dy, k):
  """dW of a stride-1 'same' convolution as k*k matrix products."""
  n = x.shape[0] * x.shape[1] * x.shape[2]
  dy2 = dy.reshape(n, dy.shape[-1])
  contract_rows = (((0,), (0,)), ((), ()))
  if k == 1:
    return lax.dot_general(x.reshape(n, x.shape[-1]), dy2, contract_rows)[None, None]
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
      taps.append(lax.dot_general(window.reshape(n, x.shape[-1]), dy2, contract_rows))
  return jnp.stack(taps).reshape(k, k, *taps[0].shape)


_conv_custom_vjp.defvjp(_conv_custom_vjp_fwd, _conv_custom_vjp_bwd)


def _after(x: jax.Array, dependency: jax.Array) -> jax.Array:
  """`x`, computed only once `dependency` exists.

  XLA:CPU removes `lax.optimization_barrier` before scheduling, so the order
  is forced by data instead: x + 0 * (an element of `dependency`), which the
  compiler must keep (0 * inf is not 0) and fuses into x's producer for free.
  """
  zero = dependency.reshape(-1)[0].astype(x.dtype) * 0
  return x + zero
