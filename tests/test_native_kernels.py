"""Building and loading the native CPU kernels: cache, ISA limit, fallbacks.

Each case runs in a fresh process (the library is built and registered once
per process) with its own cache directory. The kernels' values are tested in
test_cpu_conv.py.
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from triplet_pose.models import native_kernels

_PROBE = r"""
import json, jax.numpy as jnp
from triplet_pose.models import cpu_conv, native_kernels as n
x, w = jnp.ones((1, 4, 4, 16)), jnp.ones((3, 3, 16, 16))
print("RESULT", json.dumps(dict(
    available=n.available(), reason=n.unavailable_reason(),
    lanes=n.vector_lanes() if n.available() else 0,
    conv=float(cpu_conv.conv2d(x, w)[0, 1, 1, 0]))))
"""


def _probe(tmp_path, **env):
  full = dict(os.environ, JAX_PLATFORMS="cpu", TRIPLET_POSE_CACHE_DIR=str(tmp_path / "cache"))
  full.pop(native_kernels.MAX_ISA_ENV, None)
  full.update(env)
  out = subprocess.run([sys.executable, "-c", _PROBE], cwd=REPO, env=full,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  line = next(l for l in out.stdout.splitlines() if l.startswith("RESULT"))
  return json.loads(line[len("RESULT "):])


needs_native = pytest.mark.skipif(
    not native_kernels.available(),
    reason=f"native CPU kernels unavailable: {native_kernels.unavailable_reason()}")


@needs_native
def test_build_is_cached_per_isa(tmp_path):
  first = _probe(tmp_path)
  assert first["available"] and first["lanes"] in (8, 16)
  assert first["conv"] == 16 * 9  # an interior pixel: 9 taps x 16 channels of ones
  libraries = os.listdir(tmp_path / "cache")
  assert len(libraries) == 1 and libraries[0].endswith(".so")
  built = os.stat(tmp_path / "cache" / libraries[0]).st_mtime_ns
  assert _probe(tmp_path) == first  # loaded from the cache, not rebuilt:
  assert os.stat(tmp_path / "cache" / libraries[0]).st_mtime_ns == built
  # Limited to AVX2: another library, 8 floats per vector, same values.
  avx2 = _probe(tmp_path, TRIPLET_POSE_NATIVE_MAX_ISA="AVX2")
  assert avx2["available"] and avx2["lanes"] == 8 and avx2["conv"] == first["conv"]
  assert len(os.listdir(tmp_path / "cache")) == 2


@pytest.mark.parametrize("env,reason", [
    ({"TRIPLET_POSE_NATIVE_KERNELS": "0"}, "disabled by TRIPLET_POSE_NATIVE_KERNELS=0"),
    ({"CXX": "/nonexistent/c++"}, "no C++ compiler"),
    ({"TRIPLET_POSE_NATIVE_MAX_ISA": "sse2"}, "expected one of ['avx2', 'native']"),
])
def test_without_the_kernels_convolutions_fall_back(tmp_path, env, reason):
  result = _probe(tmp_path, **env)
  assert not result["available"] and reason in result["reason"]
  assert result["conv"] == 16 * 9  # cpu_conv's 'auto' took XLA-only code


def test_a_failed_build_falls_back_and_caches_nothing(tmp_path):
  compiler = tmp_path / "broken-c++"
  compiler.write_text('#!/bin/sh\n[ "$1" = --version ] && echo broken 1.0 && exit 0\n'
                      'echo "conv.cc:1: error: no" >&2\nexit 1\n')
  compiler.chmod(0o755)
  result = _probe(tmp_path, CXX=str(compiler))
  assert not result["available"]
  assert "failed to build" in result["reason"] and "error: no" in result["reason"]
  assert result["conv"] == 16 * 9
  assert os.listdir(tmp_path / "cache") == []  # no library, no temporary left behind
