"""benchmarks/gpu.py --quick runs on the CPU and reports every part; train_step's helpers."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

_REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_REPO / "benchmarks"))
import train_step  # pylint: disable=g-import-not-at-top,wrong-import-position


@pytest.mark.slow
def test_gpu_benchmark_quick_writes_table_and_json(tmp_path):
  out = tmp_path / "gpu.json"
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, str(_REPO / "benchmarks" / "gpu.py"), "--quick",
       f"--json={out}", "--frameworks=jax,torch", "--dtypes=bfloat16"],
      capture_output=True, text=True, cwd=tmp_path, env=env, timeout=900, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(out.read_text())
  rows = report["rows"]
  assert report["quick"] and "cpu" in report["device"].lower()
  # Ours ran in the dtype asked for; every row was measured or says why not.
  ours = [r for r in rows if r["part"] == "train" and r["framework"] == "jax"]
  assert [r["dtype"] for r in ours] == ["bfloat16"]
  assert all(r["img_s"] > 0 for r in ours)
  assert all(("img_s" in r or "fps" in r) != ("skipped" in r) for r in rows)
  sims = [r for r in rows if r["part"] == "simulator" and r["framework"] == "jax"]
  assert len(sims) == 2 and all(r["fps"] > 0 for r in sims)
  (video,) = [r for r in rows if r["part"] == "video"]
  assert video.get("fps", 0) > 0 or video["skipped"], video
  if "torch" in sys.modules or _installed("torch"):
    torch_rows = [r for r in rows if r["part"] == "train" and r["framework"] == "torch"]
    assert all(r["ours_over_this"] > 0 for r in torch_rows), torch_rows
  # The printed table has one line per row.
  lines = [l for l in proc.stdout.splitlines() if l.startswith("  train ")
           or l.startswith("  simulator ") or l.startswith("  video ")]
  assert len(lines) == len(rows), proc.stdout


def _installed(module: str) -> bool:
  try:
    __import__(module)
    return True
  except ImportError:
    return False


def test_worker_env_limits_each_framework_to_the_isa(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
  monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
  jax_env = train_step.worker_env("jax", "avx2", "--xla_cpu_enable_fast_math=true")
  assert jax_env["XLA_FLAGS"].split() == [
      "--xla_force_host_platform_device_count=2", "--xla_cpu_max_isa=AVX2",
      "--xla_cpu_enable_fast_math=true"]
  assert jax_env["TRIPLET_POSE_NATIVE_MAX_ISA"] == "AVX2"  # our C++ kernels too
  for framework in ("torch", "torch_compile"):
    env = train_step.worker_env(framework, "avx2")
    assert env["ATEN_CPU_CAPABILITY"] == "avx2" and env["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert env["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2"  # untouched
  for framework in ("jax", "torch"):  # the same malloc for both, unless asked
    assert "glibc.malloc.hugetlb=1" in train_step.worker_env(framework, "native")[
        "GLIBC_TUNABLES"]
  assert "GLIBC_TUNABLES" not in train_step.worker_env("jax", "native", huge_pages_on=False)
  native = train_step.worker_env("torch", "native")
  assert "ONEDNN_MAX_CPU_ISA" not in native or native["ONEDNN_MAX_CPU_ISA"] == os.environ.get(
      "ONEDNN_MAX_CPU_ISA")


def test_ratios_pair_ours_with_each_peer():
  summary = {("jax", 4): {"img_s": 2.0, "img_per_cpu_s": 1.0},
             ("torch", 4): {"img_s": 1.0, "img_per_cpu_s": 2.0},
             ("torch_compile", 4): {"error": "no compiler"}}
  assert train_step.ratios(summary, [4]) == {"torch_b4": 2.0, "torch_b4_cpu": 0.5}


def test_conv_grads_times_every_part_of_every_convolution(tmp_path):
  """benchmarks/conv_grads.py: ours and PyTorch per convolution and part (needs torch)."""
  import peers  # pylint: disable=g-import-not-at-top
  peers.require("torch", why="conv_grads.py's PyTorch side")
  import conv_grads  # pylint: disable=g-import-not-at-top
  out = tmp_path / "conv.json"
  conv_grads.main(["--model=demo", "--repeats=1", f"--json={out}"])
  report = json.loads(out.read_text())
  assert [r["name"] for r in report["rows"]] == [s[0] for s in conv_grads.SHAPES["demo"]]
  for row in report["rows"]:
    for side in ("ours_ms", "torch_ms"):
      assert set(row[side]) == set(conv_grads.PARTS) and min(row[side].values()) > 0, row
  for part in conv_grads.PARTS:
    assert report["totals"]["ours"][part] == pytest.approx(
        sum(r["ours_ms"][part] for r in report["rows"]))
