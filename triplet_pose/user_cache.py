"""The user's cache folder: what a machine keeps between runs.

`$TRIPLET_POSE_CACHE_DIR`, else `~/.cache/triplet_pose`. It holds the native
CPU kernels (`models/native_kernels.py`, built once per machine) and JAX's
persistent compilation cache (`jax/`, which `launch/` entry points turn on:
`launch/common.py`). Both are compiled for this machine's CPU, so what is
kept there is named after its vector extensions (`cpu_vector_flags`): a home
directory shared by machines of different kinds keeps one copy per kind.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import platform

CACHE_ENV = "TRIPLET_POSE_CACHE_DIR"


def cache_dir() -> pathlib.Path:
  """`$TRIPLET_POSE_CACHE_DIR`, else `~/.cache/triplet_pose` (not created here)."""
  return pathlib.Path(os.environ.get(CACHE_ENV) or pathlib.Path.home() / ".cache" / "triplet_pose")


def cpu_vector_flags() -> str:
  """The CPU's vector extensions (sorted /proc/cpuinfo flags), e.g. 'avx avx2 ... sse4_2'."""
  try:
    text = pathlib.Path("/proc/cpuinfo").read_text()
  except OSError:
    return platform.processor()
  for line in text.splitlines():
    if line.startswith("flags"):
      return " ".join(sorted(f for f in line.split(":", 1)[1].split()
                             if f.startswith(("avx", "fma", "sse", "amx", "f16c"))))
  return ""


def cpu_kind() -> str:
  """A short name for this machine's kind of CPU: its architecture and vector extensions."""
  digest = hashlib.sha256(f"{platform.machine()} {cpu_vector_flags()}".encode()).hexdigest()
  return f"{platform.machine().lower()}-{digest[:12]}"
