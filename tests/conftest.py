"""Shared test fixtures: tiny configs and the location of the real MPII sample."""

import os
import pathlib
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def mpii_sample_dir() -> pathlib.Path:
  """../shared/data/mpii_sample beside the repository (or $TRIPLET_POSE_MPII_SAMPLE)."""
  env = os.environ.get("TRIPLET_POSE_MPII_SAMPLE")
  return pathlib.Path(env) if env else REPO.parent / "shared" / "data" / "mpii_sample"


@pytest.fixture
def mpii_sample() -> pathlib.Path:
  path = mpii_sample_dir()
  if not path.is_dir():
    pytest.skip(f"real MPII sample not found at {path}")
  return path


@pytest.fixture
def tiny_config():
  from configs import tiny
  return tiny.get_config()


@pytest.fixture(scope="session")
def workdirs(tmp_path_factory):
  """{"joint": workdir, "triplet": workdir}: tiny checkpoints, made once per session."""
  import tiny_workdirs  # pylint: disable=g-import-not-at-top  # builds models: only when used
  return tiny_workdirs.trained(tmp_path_factory)


@pytest.fixture(scope="session")
def combined_workdir(tmp_path_factory):
  """The workdir of a tiny combined model, made once per session."""
  import tiny_workdirs  # pylint: disable=g-import-not-at-top  # builds models: only when used
  return tiny_workdirs.combined(tmp_path_factory)


@pytest.fixture
def small_tmpfs(tmp_path):
  """mount(size) -> a fresh tmpfs of `size` ('2m'): a disk that fills up.

  Needs root in a container that allows mounts; the test is skipped elsewhere.
  """
  mounts = []

  def mount(size: str) -> pathlib.Path:
    path = tmp_path / f"tmpfs{len(mounts)}"
    path.mkdir()
    if os.geteuid() != 0 or subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True, check=False).returncode:
      pytest.skip("cannot mount a small tmpfs here")
    mounts.append(path)
    return path

  yield mount
  for path in mounts:
    subprocess.run(["umount", "-l", str(path)], check=False)
