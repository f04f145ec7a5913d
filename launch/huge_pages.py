"""Transparent huge pages for malloc: XLA:CPU's buffers without page faults.

XLA:CPU allocates each execution's temporary buffer afresh (204 MB for the
demo's joint train step); glibc serves such blocks with mmap and returns
them with munmap, so every step touches 50,000 new 4 KiB pages: in the demo
that was 135 million minor page faults and 22% of its CPU time spent in the
kernel (`/usr/bin/time -v python -m launch.demo`). With glibc's tunable
`glibc.malloc.hugetlb=1` (glibc >= 2.35) malloc asks for transparent huge
pages (2 MiB) where the kernel gives them on request (`madvise` mode, the
default of most distributions): 300 faults a step, and the demo took 13 min
26 s instead of 17 min 48 s (README, "Huge pages for malloc").

glibc reads tunables when a process starts, so `maybe_restart()` restarts
the process once (`os.execve`, same PID and arguments) with the tunable
added to GLIBC_TUNABLES. It does nothing when the tunable is already set,
when `TRIPLET_POSE_HUGE_PAGES=0`, off Linux, with an older glibc, or when
the kernel's mode is `always` (already huge) or `never` (none to be had).
No JAX import here: this runs before anything heavy is loaded.
"""

from __future__ import annotations

import os
import pathlib
import sys

TUNABLE = "glibc.malloc.hugetlb=1"
OPT_OUT_ENV = "TRIPLET_POSE_HUGE_PAGES"
_THP_MODE = pathlib.Path("/sys/kernel/mm/transparent_hugepage/enabled")


def environment(env: dict[str, str] | None = None) -> dict[str, str]:
  """`env` (default os.environ) with the tunable added to GLIBC_TUNABLES."""
  env = dict(os.environ if env is None else env)
  tunables = env.get("GLIBC_TUNABLES", "")
  if "glibc.malloc.hugetlb" not in tunables:
    env["GLIBC_TUNABLES"] = ":".join(filter(None, [tunables, TUNABLE]))
  return env


def useful() -> bool:
  """Whether the tunable would change anything in this process's children."""
  if os.environ.get(OPT_OUT_ENV, "1") == "0" or not sys.platform.startswith("linux"):
    return False
  if "glibc.malloc.hugetlb" in os.environ.get("GLIBC_TUNABLES", ""):
    return False
  try:
    name, version = os.confstr("CS_GNU_LIBC_VERSION").split()
    if name != "glibc" or tuple(int(v) for v in version.split(".")[:2]) < (2, 35):
      return False
    return "[madvise]" in _THP_MODE.read_text()
  except (OSError, ValueError, AttributeError):
    return False


def maybe_restart() -> None:
  """Restarts `python ... -m launch.<name> ...` once with huge pages (above)."""
  argv = getattr(sys, "orig_argv", [])
  if "-m" not in argv[:-1] or not argv[argv.index("-m") + 1].startswith("launch."):
    return  # imported (tests, notebooks), not an entry point being started
  if not sys.executable or not useful():
    return
  sys.stdout.flush()
  sys.stderr.flush()
  try:
    os.execve(sys.executable, [sys.executable, *argv[1:]], environment())
  except OSError:
    pass  # not restartable here: run on, with 4 KiB pages
