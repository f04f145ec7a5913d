"""CPU kernels in C++ that XLA:CPU calls through its FFI: built once per machine, on first use.

XLA:CPU (jaxlib 0.10) computes a convolution's weight gradient several times
slower than oneDNN does in PyTorch, and its stride-1 3x3 convolutions ~1.3x
slower (`benchmarks/conv_grads.py` measures each convolution of the model).
`conv_weight_grad` and `conv_forward` are register-tiled kernels
(`native/conv.cc`) which run on the threads of XLA's own intra-op pool and
give XLA's values up to float rounding, independent of the number of threads.

The source is compiled with the machine's C++ compiler (`$CXX`, else `c++`)
with `-O3 -march=native` against the FFI headers that ship with jaxlib, the
first time a process asks for it, into
`$TRIPLET_POSE_CACHE_DIR` (default `~/.cache/triplet_pose`) under a name that
hashes the source, the flags, the compiler, jaxlib's version and the CPU's
vector extensions, so that a home directory shared by different machines
keeps one library per CPU kind; it takes seconds, once.
`TRIPLET_POSE_NATIVE_MAX_ISA=AVX2` builds them without AVX-512 (8 floats per
vector, 16 registers), as on a CPU that lacks it (`benchmarks/train_step.py
--isa=avx2` emulates such a CPU this way). Where there is no
compiler, or the build fails, or `TRIPLET_POSE_NATIVE_KERNELS=0` is set,
`available()` is False, `unavailable_reason()` says why, and callers
(`cpu_conv.conv2d`) fall back to XLA-only code.

Derivatives: each kernel carries a `custom_jvp` written with XLA's
convolutions, so gradients of gradients work, except inside a `lax.scan`
(the scanned hourglass stacks): when JAX partially evaluates a scan's body
it inlines the custom_jvp, and a second derivative then reaches the FFI
call, which has none. Set `TRIPLET_POSE_NATIVE_KERNELS=0` (or
`conv_impl='cpu_vjp'`) to differentiate a train step itself.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import pathlib
import platform
import shutil
import subprocess
import tempfile

from absl import logging
import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

from triplet_pose import user_cache

DISABLE_ENV = "TRIPLET_POSE_NATIVE_KERNELS"
CACHE_ENV = user_cache.CACHE_ENV
MAX_ISA_ENV = "TRIPLET_POSE_NATIVE_MAX_ISA"
# $TRIPLET_POSE_NATIVE_MAX_ISA -> the compiler flags that limit the build to it.
_MAX_ISA_FLAGS = {"": (), "native": (), "avx2": ("-mno-avx512f",)}
_SOURCE = pathlib.Path(__file__).with_name("native") / "conv.cc"
# FFI target name -> the handler symbol in the library.
_TARGETS = {"triplet_pose_conv_weight_grad": "TripletPoseConvWeightGrad",
            "triplet_pose_conv_forward": "TripletPoseConvForward"}
_FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC")


class _Unavailable(Exception):
  pass


def available() -> bool:
  """Whether the native kernels are built, loaded and registered with XLA:CPU."""
  return not isinstance(_library(), str)


def unavailable_reason() -> str:
  """Why `available()` is False (empty when it is True)."""
  lib = _library()
  return lib if isinstance(lib, str) else ""


def vector_lanes() -> int:
  """Floats per vector register in the built kernels (16: AVX-512, 8: AVX2)."""
  lib = _library()
  if isinstance(lib, str):
    raise RuntimeError(f"native CPU kernels unavailable: {lib}")
  return int(lib.triplet_pose_vector_lanes())


def supports(c_out: int) -> bool:
  """Whether the kernels exist and take C_out output channels (a multiple of the vector width)."""
  return available() and c_out % vector_lanes() == 0


def _check(x: jax.Array, other: jax.Array, c_out: int, name: str) -> None:
  if not available():
    raise RuntimeError(f"native CPU kernels unavailable: {unavailable_reason()}")
  if x.ndim != 4 or other.ndim != 4 or not supports(c_out):
    raise ValueError(f"{name}: x {x.shape} and {other.shape} must be 4-D with the output "
                     f"channels ({c_out}) a multiple of {vector_lanes()}")


def conv_weight_grad(x: jax.Array, dy: jax.Array, *, kernel_size: int, stride: int,
                     pad: int) -> jax.Array:
  """Weight gradient of an NHWC x HWIO convolution with symmetric zero padding.

  dW[kh, kw, ci, co] = sum over n, oh, ow of
  x[n, oh * stride + kh - pad, ow * stride + kw - pad, ci] * dy[n, oh, ow, co],
  computed in float32 on the CPU.

  Args:
    x: (N, H, W, C_in) input of the convolution.
    dy: (N, H_out, W_out, C_out) gradient of its output; C_out a multiple of
      `vector_lanes()`.
    kernel_size: k of the (k, k, C_in, C_out) kernel.
    stride: the convolution's stride.
    pad: zero padding on each side of H and W.

  Returns:
    (k, k, C_in, C_out) float32.
  """
  _check(x, dy, dy.shape[-1], "conv_weight_grad")
  return _weight_grad(x.astype(jnp.float32), dy.astype(jnp.float32), kernel_size, stride, pad)


def conv_forward(x: jax.Array, kernel: jax.Array, *, stride: int = 1) -> jax.Array:
  """NHWC x HWIO convolution with (k-1)/2 zero padding on each side, in float32.

  Args:
    x: (N, H, W, C_in).
    kernel: (k, k, C_in, C_out), k odd, C_out a multiple of `vector_lanes()`.
    stride: spatial stride.

  Returns:
    (N, H_out, W_out, C_out) float32, H_out = (H - 1) // stride + 1 (W alike).
  """
  _check(x, kernel, kernel.shape[-1], "conv_forward")
  k = kernel.shape[0]
  if k % 2 != 1 or kernel.shape[1] != k or kernel.shape[2] != x.shape[-1]:
    raise ValueError(f"conv_forward: kernel {kernel.shape} must be (k, k, {x.shape[-1]}, C_out), "
                     "k odd")
  return _forward(x.astype(jnp.float32), kernel.astype(jnp.float32), stride, (k - 1) // 2)


# The kernels compute first derivatives fast. Their own derivatives (a
# gradient of a gradient, e.g. differentiating through a whole train step)
# are the same bilinear maps written with XLA's convolutions, which JAX can
# transpose and differentiate again.

@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def _weight_grad(x, dy, kernel_size, stride, pad):
  out = jax.ShapeDtypeStruct((kernel_size, kernel_size, x.shape[-1], dy.shape[-1]), jnp.float32)
  return jax.ffi.ffi_call("triplet_pose_conv_weight_grad", out, vmap_method="sequential")(
      x, dy, stride=np.int64(stride), pad=np.int64(pad))


@_weight_grad.defjvp
def _weight_grad_jvp(kernel_size, stride, pad, primals, tangents):
  (x, dy), (tx, tdy) = primals, tangents
  def xla(x, dy):
    w = jnp.zeros((kernel_size, kernel_size, x.shape[-1], dy.shape[-1]), jnp.float32)
    return jax.vjp(lambda w: _xla_conv(x, w, stride, pad), w)[1](dy)[0]
  return _weight_grad(x, dy, kernel_size, stride, pad), xla(tx, dy) + xla(x, tdy)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _forward(x, kernel, stride, pad):
  k = kernel.shape[0]
  n, h, w = x.shape[:3]
  out = jax.ShapeDtypeStruct((n, (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1,
                              kernel.shape[-1]), jnp.float32)
  return jax.ffi.ffi_call("triplet_pose_conv_forward", out, vmap_method="sequential")(
      x, kernel, stride=np.int64(stride), pad=np.int64(pad))


@_forward.defjvp
def _forward_jvp(stride, pad, primals, tangents):
  (x, kernel), (tx, tkernel) = primals, tangents
  return (_forward(x, kernel, stride, pad),
          _xla_conv(tx, kernel, stride, pad) + _xla_conv(x, tkernel, stride, pad))


def _xla_conv(x, kernel, stride, pad):
  return jax.lax.conv_general_dilated(x, kernel, (stride, stride), ((pad, pad), (pad, pad)),
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


@functools.cache
def _library() -> ctypes.CDLL | str:
  """The loaded, registered library, or the reason there is none."""
  if os.environ.get(DISABLE_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
    return f"disabled by {DISABLE_ENV}={os.environ[DISABLE_ENV]}"
  if platform.machine().lower() not in ("x86_64", "amd64"):
    return f"built for x86-64 only (this machine: {platform.machine()})"
  try:
    lib = ctypes.CDLL(str(_build()))
    for target, symbol in _TARGETS.items():
      jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(lib, symbol)),
                                  platform="cpu")
  except (_Unavailable, OSError, AttributeError, subprocess.SubprocessError) as e:
    logging.warning("native CPU kernels unavailable, using XLA's: %s", e)
    return str(e)
  return lib


def _flags() -> tuple[str, ...]:
  isa = os.environ.get(MAX_ISA_ENV, "").strip().lower()
  if isa not in _MAX_ISA_FLAGS:
    raise _Unavailable(f"{MAX_ISA_ENV}={isa!r}: expected one of {sorted(_MAX_ISA_FLAGS)[1:]}")
  return _FLAGS + _MAX_ISA_FLAGS[isa]


def _build() -> pathlib.Path:
  flags = _flags()
  compiler = os.environ.get("CXX") or "c++"
  if shutil.which(compiler) is None:
    raise _Unavailable(f"no C++ compiler ({compiler!r} not found; set $CXX)")
  include = jax.ffi.include_dir()
  try:
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                             check=True, timeout=60).stdout
  except (OSError, subprocess.SubprocessError) as e:
    raise _Unavailable(f"{compiler} --version failed: {e}") from e
  key = hashlib.sha256()
  for part in (_SOURCE.read_bytes(), " ".join(flags).encode(), version.encode(),
               jaxlib.__version__.encode(), user_cache.cpu_vector_flags().encode()):
    key.update(part)
    key.update(b"\0")
  cache = user_cache.cache_dir()
  target = cache / f"{_SOURCE.stem}-{key.hexdigest()[:16]}.so"
  if target.exists():
    return target
  cache.mkdir(parents=True, exist_ok=True)
  logging.info("building native CPU kernels (once per machine): %s", target)
  # Built under a temporary name and renamed: concurrent processes each build
  # their own and the last rename wins, never a half-written library.
  fd, tmp = tempfile.mkstemp(dir=cache, suffix=".so.tmp")
  os.close(fd)
  try:
    result = subprocess.run([compiler, *flags, "-isystem", include, str(_SOURCE), "-o", tmp],
                            capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
      last = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
      raise _Unavailable(f"{compiler} failed to build {_SOURCE}: {last}")
    os.replace(tmp, target)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return target
