"""Entry points restart once with glibc's huge-page tunable; imports do not."""

import os
import subprocess
import sys

import pytest

from conftest import REPO
from launch import huge_pages


def _run(*args, **env):
  base = {k: v for k, v in os.environ.items()
          if k not in ("GLIBC_TUNABLES", huge_pages.OPT_OUT_ENV)}
  return subprocess.run([sys.executable, *args], cwd=REPO, env={**base, **env},
                        capture_output=True, text=True, check=True).stdout.strip()


def test_environment_adds_the_tunable_once_beside_others():
  env = huge_pages.environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
  assert env["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{huge_pages.TUNABLE}"
  assert huge_pages.environment(env)["GLIBC_TUNABLES"] == env["GLIBC_TUNABLES"]
  assert huge_pages.environment({})["GLIBC_TUNABLES"] == huge_pages.TUNABLE


def test_an_entry_point_runs_with_huge_pages_and_can_opt_out():
  saved = os.environ.pop("GLIBC_TUNABLES", None)
  try:
    if not huge_pages.useful():
      pytest.skip("glibc < 2.35, not Linux or transparent huge pages not in madvise mode")
  finally:
    if saved is not None:
      os.environ["GLIBC_TUNABLES"] = saved
  assert _run("-m", "launch.environment") == huge_pages.TUNABLE
  assert _run("-m", "launch.environment", **{huge_pages.OPT_OUT_ENV: "0"}) == ""
  # Importing the package (tests, notebooks) restarts nothing.
  assert _run("-c", "import launch.common, os; print(os.environ.get('GLIBC_TUNABLES', ''))") == ""
