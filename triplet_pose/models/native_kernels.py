"""CPU kernels in C++ that XLA:CPU calls through its FFI: built once per machine, on first use.

XLA:CPU (jaxlib 0.10) computes a convolution's weight gradient several times
slower than oneDNN does in PyTorch (`benchmarks/conv_grads.py` measures each
convolution of the model). `conv_weight_grad` is that gradient as a
register-tiled kernel (`native/conv_weight_grad.cc`) which runs on the
threads of XLA's own intra-op pool and gives the same values up to float
rounding, independent of the number of threads.

The source is compiled with the machine's C++ compiler (`$CXX`, else `c++`)
with `-O3 -march=native` against the FFI headers that ship with jaxlib, the
first time a process asks for it, into
`$TRIPLET_POSE_CACHE_DIR` (default `~/.cache/triplet_pose`) under a name that
hashes the source, the flags, the compiler, jaxlib's version and the CPU's
vector extensions, so that a home directory shared by different machines
keeps one library per CPU kind. This takes ~3 s once. Where there is no
compiler, or the build fails, or `TRIPLET_POSE_NATIVE_KERNELS=0` is set,
`available()` is False, `unavailable_reason()` says why, and callers
(`cpu_conv.conv2d`) fall back to XLA-only code.
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

DISABLE_ENV = "TRIPLET_POSE_NATIVE_KERNELS"
CACHE_ENV = "TRIPLET_POSE_CACHE_DIR"
_SOURCE = pathlib.Path(__file__).with_name("native") / "conv_weight_grad.cc"
_TARGET = "triplet_pose_conv_weight_grad"
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


def supports_weight_grad(c_out: int) -> bool:
  """Whether the kernels exist and `conv_weight_grad` takes C_out output channels."""
  return available() and c_out % vector_lanes() == 0


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
  if not available():
    raise RuntimeError(f"native CPU kernels unavailable: {unavailable_reason()}")
  if x.ndim != 4 or dy.ndim != 4 or not supports_weight_grad(dy.shape[-1]):
    raise ValueError(f"conv_weight_grad: x {x.shape} and dy {dy.shape} must be NHWC with "
                     f"C_out a multiple of {vector_lanes()}")
  out = jax.ShapeDtypeStruct((kernel_size, kernel_size, x.shape[-1], dy.shape[-1]), jnp.float32)
  return jax.ffi.ffi_call(_TARGET, out, vmap_method="sequential")(
      x.astype(jnp.float32), dy.astype(jnp.float32), stride=np.int64(stride),
      pad=np.int64(pad))


@functools.cache
def _library() -> ctypes.CDLL | str:
  """The loaded, registered library, or the reason there is none."""
  if os.environ.get(DISABLE_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
    return f"disabled by {DISABLE_ENV}={os.environ[DISABLE_ENV]}"
  if platform.machine().lower() not in ("x86_64", "amd64"):
    return f"built for x86-64 only (this machine: {platform.machine()})"
  try:
    lib = ctypes.CDLL(str(_build()))
    jax.ffi.register_ffi_target(_TARGET, jax.ffi.pycapsule(lib.TripletPoseConvWeightGrad),
                                platform="cpu")
  except (_Unavailable, OSError, AttributeError) as e:
    logging.warning("native CPU kernels unavailable, using XLA's: %s", e)
    return str(e)
  return lib


def _build() -> pathlib.Path:
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
  for part in (_SOURCE.read_bytes(), " ".join(_FLAGS).encode(), version.encode(),
               jaxlib.__version__.encode(), _cpu_vector_flags().encode()):
    key.update(part)
    key.update(b"\0")
  cache = pathlib.Path(os.environ.get(CACHE_ENV) or pathlib.Path.home() / ".cache" / "triplet_pose")
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
    result = subprocess.run([compiler, *_FLAGS, "-isystem", include, str(_SOURCE), "-o", tmp],
                            capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
      raise _Unavailable(f"{compiler} failed to build {_SOURCE.name}: "
                         f"{result.stderr.strip().splitlines()[-1:] or result.returncode}")
    os.replace(tmp, target)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return target


def _cpu_vector_flags() -> str:
  """The CPU's vector extensions, so that a library built for one CPU is not loaded on another."""
  try:
    text = pathlib.Path("/proc/cpuinfo").read_text()
  except OSError:
    return platform.processor()
  for line in text.splitlines():
    if line.startswith("flags"):
      return " ".join(sorted(f for f in line.split(":", 1)[1].split()
                             if f.startswith(("avx", "fma", "sse", "amx", "f16c"))))
  return ""
