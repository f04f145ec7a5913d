"""benchmarks/gpu.py --quick runs on the CPU and reports every part; the shared helpers."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

_REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_REPO / "benchmarks"))
import common  # pylint: disable=g-import-not-at-top,wrong-import-position
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
  args = json.loads((tmp_path / report["provenance"]["config"]["file"]).read_text())
  assert args["quick"] is True and args["json"] == str(out)
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
  assert report["provenance"]["config"]["file"] == "conv.config.json"
  assert [r["name"] for r in report["rows"]] == [s[0] for s in conv_grads.SHAPES["demo"]]
  for row in report["rows"]:
    for side in ("ours_ms", "torch_ms"):
      assert set(row[side]) == set(conv_grads.PARTS) and min(row[side].values()) > 0, row
  for part in conv_grads.PARTS:
    assert report["totals"]["ours"][part] == pytest.approx(
        sum(r["ours_ms"][part] for r in report["rows"]))


def test_joint_model_follows_train_step_flags_into_the_config():
  args = train_step.parse_args(["--stacks=2", "--features=32", "--stem_features=16",
                                "--dtype=bfloat16", "--remat", "--image_size=128"])
  model = common.JointModel.from_args(args)
  assert model == common.JointModel(stacks=2, features=32, stem_features=16,
                                    dtype="bfloat16", remat=True, image_size=128)
  config = common.joint_config(model, batch=3)
  assert (config.model.num_stacks, config.model.num_features, config.model.stem_features,
          config.model.hourglass_depth, config.model.dtype, config.model.remat) == (
              2, 32, 16, 4, "bfloat16", True)
  assert (config.input.image_size, config.input.heatmap_size, config.input.batch_size) == (
      128, 32, 3)
  assert not config.augment.enabled


def test_time_steps_times_only_the_steps_after_the_warmup():
  calls = []
  times = common.time_steps(calls.append, warmup=2, steps=3)
  assert calls == [0, 1, 2, 3, 4]
  assert len(times.step_s) == len(times.cpu_s) == 3 and times.first_s >= 0


def test_jax_train_step_trains_and_can_be_lowered_alone():
  model = common.JointModel(stacks=1, features=16, depth=1, stem_features=16, image_size=32)
  step = common.jax_train_step(common.joint_config(model, batch=2))
  compiled = step.fn.lower(step.state, step.batch, step.rng).compile()
  assert compiled is not None
  losses = [step(i) for i in range(3)]
  assert all(l > 0 for l in losses) and int(step.state.step) == 3


def test_machine_names_the_cpu_and_write_json_round_trips(tmp_path):
  found = common.machine()
  assert found["cpu"] and found["cpu"] != "unknown" and found["cpus_allowed"] >= 1
  assert found["cpu"] in common.describe_machine(found)
  path = common.write_json(tmp_path / "out" / "r.json", {"machine": found, "x": float("nan")},
                           config={"steps": 3}, models={"joint": {"workdir": "/w", "step": 9}})
  written = json.loads(path.read_text())
  assert written["machine"] == found
  block = written["provenance"]
  assert block["machine"]["cpu"] == found["cpu"] == common.cpu_model()
  assert block["models"] == {"joint": {"workdir": "/w", "step": 9}} and block["versions"]["jax"]
  assert json.loads((path.parent / "r.config.json").read_text()) == {"steps": 3}


@pytest.mark.slow
def test_compile_time_quick_measures_both_layouts_and_the_resumed_compile(tmp_path):
  """benchmarks/compile_time.py --quick: every run measured, the same first loss in
  both layouts, and the resumed process loads every program from the cache."""
  out = tmp_path / "compile.json"
  proc = subprocess.run(
      [sys.executable, str(_REPO / "benchmarks" / "compile_time.py"), "--quick",
       f"--json={out}"], capture_output=True, text=True, cwd=tmp_path,
      env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=1200, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(out.read_text())
  runs, summary = report["runs"], report["summary"]
  assert {(r["layout"], r["stacks"]) for r in runs["compile"]} == {
      (layout, stacks) for layout in ("unrolled", "scanned", "scan_unroll") for stacks in (2, 4)}
  assert all(r["total_s"] > r["compile_s"] > 0 for r in runs["compile"])
  assert [r["layout"] for r in runs["step"]] == ["unrolled", "scanned", "scan_unroll"]
  assert summary["first_loss_rel_diff"] < 1e-4
  filled, resumed = runs["resumed"]
  assert filled["cache_misses"] > 0 and filled["cache_hits"] == 0
  assert resumed["cache_hits"] == filled["cache_misses"] and resumed["cache_misses"] == 0
  assert set(summary["goals_met"]) == {"compile_speedup", "stacks_growth", "step_change",
                                       "resumed_compile_s"}
  assert len(report["table"]["rows"]) == 5 and "compile, 4 stacks (s)" in proc.stdout


@pytest.mark.slow
def test_gpu_benchmark_runs_on_the_cpu_with_compile_time_and_table(tmp_path):
  """benchmarks/gpu.py --platform=cpu --quick: every part, both dtypes, the compile time."""
  out = tmp_path / "gpu.json"
  proc = subprocess.run(
      [sys.executable, str(_REPO / "benchmarks" / "gpu.py"), "--platform=cpu", "--quick",
       f"--json={out}"], capture_output=True, text=True, cwd=tmp_path, timeout=1200,
      check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(out.read_text())
  assert report["device"].startswith("JAX cpu")
  (compiled,) = report["compile"]
  assert compiled["layout"] == "scanned" and compiled["total_s"] > compiled["compile_s"] > 0
  ours = [r for r in report["rows"] if r["part"] == "train" and r["framework"] == "jax"]
  assert sorted(r["dtype"] for r in ours) == ["bfloat16", "float32"]
  assert all(r["img_s"] > 0 for r in ours)
  whats = [row[0] for row in report["table"]["rows"]]
  assert whats[0].startswith("compile train step") and any("video" in w for w in whats)
