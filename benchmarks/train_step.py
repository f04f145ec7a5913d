r"""Images/s and peak memory of the jitted train step, against PyTorch in the same run.

  python benchmarks/train_step.py               # thesis joint model: 8 stacks, batch 4 and 16
  python benchmarks/train_step.py --quick       # 1 stack, batch 4
  python benchmarks/train_step.py --quick --repeats=3 --isa=avx2   # AVX2-only CPUs
  python benchmarks/train_step.py --demo_model --repeats=3   # the demo's model, batch 16
  python benchmarks/train_step.py --stacks=2 --batches=4 --repeats=3 \
      --xla_flags=--xla_cpu_enable_fast_math=true

This file is the driver (flags, worker processes and their environment, the
table, the JSON file); `train_step_workers.py` measures one step in a worker,
and `common.py` holds what the benchmarks share (the machine, our step's
construction, timing, memory).

What one step includes (printed with the results):
* ours (`jax`): `triplet_pose.train.train_step` under `jax.jit`, state donated:
  target heatmaps rendered from the keypoints, forward pass in training mode
  (batch statistics and their running averages), masked MSE per stack summed
  over stacks, backward pass, gradient norm, Adam update; the batch (uint8
  images, keypoints) is already on the device; the loss is fetched to the host.
* PyTorch eager (`torch`): the reference graph
  (`triplet_pose.models.torch_reference`) in training mode, zero_grad, MSE per
  stack summed over stacks, backward, `torch.optim.Adam` step, loss fetched;
  images (float) and target heatmaps are precomputed on the device.
* PyTorch compiled (`torch_compile`): the same step with forward + loss
  (and, through AOTAutograd, their backward) under `torch.compile`, the Adam
  step eager; reported as unavailable with the reason when compiling fails
  (e.g. no C++ compiler).

--isa=avx2 emulates a CPU without AVX-512 on one that has it: XLA gets
`--xla_cpu_max_isa=AVX2` (it limits the code XLA generates; the YNNPACK and
Eigen kernels that XLA calls pick their instructions from CPUID and keep
AVX-512) and our native convolution kernels are built without AVX-512
(`TRIPLET_POSE_NATIVE_MAX_ISA=AVX2`); PyTorch gets ATEN_CPU_CAPABILITY=avx2
and ONEDNN_MAX_CPU_ISA=AVX2 (ATen's kernels and oneDNN's convolutions both
honour them). Each worker reports what took effect.

Every (framework, batch) measurement runs in a fresh subprocess, so that
each has the whole machine, its own XLA_FLAGS and its own memory high-water
mark; with --repeats > 1 the runs of the two frameworks alternate and the
median over runs is reported (other jobs on the machine disturb timings:
compare ratios, and repeat). Both frameworks get the same CPU threads
(--threads, default: all CPUs this process may use; fewer pins the workers to
the first N CPUs). Reported: images/s (median over timed steps), the first
step's time (compilation included), peak memory (CPU: the process's RSS
high-water mark, including the framework itself, and its increase over the
RSS after import; GPU: the device allocator's peak), and the ratio ours /
PyTorch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys

import common  # first: puts the repository on sys.path
import train_step_workers
from launch import huge_pages
from triplet_pose.models import cpu_conv
from triplet_pose.models import native_kernels

_WORKER = "--_worker"
# --huge_pages: the frameworks whose workers malloc with transparent huge pages.
_HUGE_PAGES = {"ours": ("jax",), "both": ("jax", "torch", "torch_compile"), "none": ()}
# Environment that limits each framework to an instruction set.
_ISA_ENV = {
    "native": {"jax": {}, "torch": {}},
    "avx2": {"jax": {"XLA_FLAGS": "--xla_cpu_max_isa=AVX2",
                     native_kernels.MAX_ISA_ENV: "AVX2"},
             "torch": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}},
}
NAMES = {"jax": "ours (jax)", "torch": "pytorch", "torch_compile": "torch.compile"}
STEP_CONTENTS = train_step_workers.STEP_CONTENTS
# benchmarks/gpu.py reads these here; common and train_step_workers own them.
worker_jax, worker_torch = train_step_workers.worker_jax, train_step_workers.worker_torch
cpu_model, versions = common.cpu_model, common.versions


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--stacks", type=int, default=8)
  p.add_argument("--features", type=int, default=256)
  p.add_argument("--image_size", type=int, default=256)
  p.add_argument("--stem_features", type=int, default=128,
                 help="width of the stem's residual blocks (128: the reference's)")
  p.add_argument("--depth", type=int, default=4, help="levels per hourglass")
  p.add_argument("--batches", default="4,16", help="comma-separated batch sizes")
  p.add_argument("--steps", type=int, default=None,
                 help="timed steps per run (default 3; 2 with --quick)")
  p.add_argument("--warmup", type=int, default=1, help="untimed steps (compile) per run")
  p.add_argument("--repeats", type=int, default=1, help="runs per (framework, batch)")
  p.add_argument("--frameworks", default="jax,torch,torch_compile",
                 help="any of jax, torch (eager), torch_compile")
  p.add_argument("--threads", type=int, default=0, help="CPU threads (0: all allowed)")
  p.add_argument("--dtype", default="float32", help="compute dtype: float32 or bfloat16")
  p.add_argument("--remat", action="store_true", help="rematerialise each hourglass (ours)")
  p.add_argument("--xla_flags", default="", help="appended to XLA_FLAGS for our workers")
  p.add_argument("--isa", default="native", choices=sorted(_ISA_ENV),
                 help="limit both frameworks' CPU instruction set (avx2: emulate "
                      "an AVX2-only CPU)")
  p.add_argument("--huge_pages", default="ours", choices=sorted(_HUGE_PAGES),
                 help="whose workers malloc with transparent huge pages (GLIBC_TUNABLES="
                      "glibc.malloc.hugetlb=1): 'ours' (as launch/ runs ours; PyTorch as "
                      "it runs by default), 'both' or 'none'")
  p.add_argument("--conv_impl", default="auto", choices=cpu_conv.IMPLS,
                 help="our convolutions' gradient (cpu_conv.conv2d impl)")
  p.add_argument("--profile", action="store_true",
                 help="profile one more step per worker and print each framework's "
                      "time by kind of operation")
  p.add_argument("--timeout", type=float, default=1800,
                 help="seconds before a worker is abandoned")
  p.add_argument("--quick", action="store_true", help="1 stack, batch 4, 2 timed steps")
  p.add_argument("--demo_model", action="store_true",
                 help="the model of configs/demo.py (1 stack, 64 features, depth 3, stem "
                      "32, 128 px) at its batch size 16, 10 timed steps")
  p.add_argument("--wait_idle", type=float, default=0.0,
                 help="before each run, wait up to this many seconds for other "
                      "processes to leave the CPUs idle (shared machines)")
  p.add_argument("--json", default="", help="also write all results to this file")
  p.add_argument(_WORKER, default="", help=argparse.SUPPRESS)
  p.add_argument("--_batch", type=int, default=0, help=argparse.SUPPRESS)
  p.add_argument("--_no_isa_report", dest="report_isa", action="store_false",
                 help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.quick:
    args.stacks, args.batches = 1, "4"
  if args.demo_model:
    args.stacks, args.features, args.depth, args.stem_features = 1, 64, 3, 32
    args.image_size, args.batches = 128, "16"
  if args.steps is None:
    args.steps = 2 if args.quick else 10 if args.demo_model else 3
  return args


def _worker(args) -> None:
  """A worker process: pins its CPUs, measures, prints its result as one JSON line."""
  common.pin_cpus(args.threads)
  print("RESULT " + json.dumps(train_step_workers.run(args)), flush=True)


# ----------------------------------------------------------------------------- driver


def worker_env(framework: str, isa: str, xla_flags: str = "", *,
               huge_pages_on: bool = True) -> dict[str, str]:
  """The environment of a `framework` worker limited to instruction set `isa`.

  `huge_pages_on`: the worker mallocs with transparent huge pages, as
  `launch/` entry points run (launch/huge_pages.py).
  """
  env = huge_pages.environment() if huge_pages_on else dict(os.environ)
  extra = dict(_ISA_ENV[isa]["jax" if framework == "jax" else "torch"])
  if framework == "jax":
    extra["XLA_FLAGS"] = " ".join(filter(None, [env.get("XLA_FLAGS", ""),
                                                extra.get("XLA_FLAGS", ""), xla_flags]))
  env.update(extra)
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [common.REPO, env.get("PYTHONPATH", "")]))
  return env


def run_worker(args, framework: str, batch: int, threads: int) -> dict:
  """One measurement in a fresh process; {'error': reason} when it fails."""
  cmd = [sys.executable, os.path.abspath(__file__), _WORKER, framework,
         "--_batch", str(batch), "--stacks", str(args.stacks),
         "--features", str(args.features), "--image_size", str(args.image_size),
         "--depth", str(args.depth), "--stem_features", str(args.stem_features),
         "--steps", str(args.steps), "--warmup", str(args.warmup),
         "--threads", str(threads), "--dtype", args.dtype,
         "--conv_impl", args.conv_impl]
  if args.remat:
    cmd.append("--remat")
  if args.profile:
    cmd.append("--profile")
  env = worker_env(framework, args.isa, args.xla_flags,
                   huge_pages_on=framework in _HUGE_PAGES[args.huge_pages])
  try:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False,
                          timeout=args.timeout)
  except subprocess.TimeoutExpired:
    return {"error": f"no result within {args.timeout:.0f} s"}
  result, onednn_isa = None, ""
  for line in proc.stdout.splitlines():
    if line.startswith("RESULT "):
      result = json.loads(line[len("RESULT "):])
    elif "onednn_verbose" in line and ",isa:" in line:
      onednn_isa = line.split(",isa:", 1)[1].strip()
  if result is None:
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    return {"error": (lines[-1] if lines else f"exit status {proc.returncode}")[:300],
            "stderr": proc.stderr[-3000:]}
  if onednn_isa:
    result["isa"] += f", oneDNN {onednn_isa}"
  return result


def _summarise(results: dict) -> dict:
  """{(framework, batch): row} from the runs of each (framework, batch)."""
  summary = {}
  for (framework, batch), runs in results.items():
    ok = [r for r in runs if "error" not in r]
    if not ok:
      summary[(framework, batch)] = {"error": runs[-1]["error"]}
      continue
    step_s = statistics.median(statistics.median(r["step_s"]) for r in ok)
    cpu_s = statistics.median(statistics.median(r["cpu_s"]) for r in ok)
    summary[(framework, batch)] = {
        "img_s": batch / step_s, "best_img_s": batch / min(min(r["step_s"]) for r in ok),
        "step_s": step_s, "cpu_s": cpu_s, "img_per_cpu_s": batch / cpu_s,
        "first_step_s": statistics.median(r["first_step_s"] for r in ok),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in ok),
        "step_peak_rss_mb": max(r["step_peak_rss_mb"] for r in ok),
        "device_peak_mb": max(r.get("device_peak_mb", float("nan")) for r in ok),
        "threads": ok[0].get("threads"), "isa": ok[0].get("isa", ""),
        "runs": len(ok)}
  return summary


def _print_table(summary: dict, frameworks: list[str], batches: list[int]) -> None:
  header = (f"{'framework':13s} {'batch':>5s} {'img/s':>7s} {'best':>7s} {'step s':>7s} "
            f"{'CPU s':>6s} {'1st step s':>10s} {'RSS MB run':>10s} {'RSS MB steps':>12s} "
            f"{'dev MB':>7s}")
  print(header)
  print("-" * len(header))
  for batch in batches:
    for framework in frameworks:
      row = summary[(framework, batch)]
      if "error" in row:
        print(f"{NAMES[framework]:13s} {batch:5d} unavailable: {row['error']}")
        continue
      print(f"{NAMES[framework]:13s} {batch:5d} {row['img_s']:7.3f} {row['best_img_s']:7.3f} "
            f"{row['step_s']:7.2f} {row['cpu_s']:6.2f} {row['first_step_s']:10.1f} "
            f"{row['peak_rss_mb']:10.0f} {row['step_peak_rss_mb']:12.0f} "
            f"{row['device_peak_mb']:7.0f}")
  print("(img/s: median over runs of each run's median step; best: fastest step; "
        "CPU s: process CPU time per step, all threads; RSS MB run: high-water mark of "
        "the whole worker, compilation included; RSS MB steps: high-water mark during "
        "the timed steps; dev MB: accelerator allocator peak)")


def _table(summary: dict, frameworks: list[str], batches: list[int],
           found: dict[str, float]) -> dict:
  """The headline table: img/s and CPU time per step, ours over each peer."""
  rows = []
  for batch in batches:
    for framework in frameworks:
      row = summary[(framework, batch)]
      if "error" in row:
        rows.append([NAMES[framework], batch, "unavailable", "-", "-"])
        continue
      ratio = "-"
      if f"{framework}_b{batch}" in found:
        ratio = (f"**{found[f'{framework}_b{batch}']:.2f}x**, "
                 f"{found[f'{framework}_b{batch}_cpu']:.2f}x")
      rows.append([NAMES[framework], batch, f"{row['img_s']:.3f}", f"{row['cpu_s']:.2f}", ratio])
  return common.table(
      ["framework", "batch", "img/s", "CPU s/step", "ours / it: img/s, per CPU-second"], rows,
      title="train step, ours against PyTorch",
      note="img/s: median over runs of each run's median step; CPU s: process CPU time "
      "per step, all threads")


def ratios(summary: dict, batches: list[int]) -> dict[str, float]:
  """ours / peer images/s for every peer and batch that ran."""
  out = {}
  for batch in batches:
    ours = summary.get(("jax", batch), {})
    for peer in ("torch", "torch_compile"):
      theirs = summary.get((peer, batch), {})
      if "img_s" in ours and "img_s" in theirs:
        out[f"{peer}_b{batch}"] = ours["img_s"] / theirs["img_s"]
        out[f"{peer}_b{batch}_cpu"] = ours["img_per_cpu_s"] / theirs["img_per_cpu_s"]
  return out


def _header(args, frameworks: list[str], threads: int) -> None:
  print(f"machine: {common.cpu_model()} ({common.cpu_flags()}), {os.cpu_count()} CPUs, "
        f"{threads} thread(s) for each framework; {platform.platform()}")
  print("versions: " + ", ".join(f"{k} {v}" for k, v in common.versions(frameworks).items()))
  print(f"instruction set: {args.isa}; XLA_FLAGS (ours): "
        f"{worker_env('jax', args.isa, args.xla_flags)['XLA_FLAGS'] or '(none)'}; "
        "PyTorch env: " + (" ".join(f"{k}={v}" for k, v in _ISA_ENV[args.isa]["torch"].items())
                          or "(none)"))
  print(f"malloc with huge pages (GLIBC_TUNABLES={huge_pages.TUNABLE}): "
        + (", ".join(NAMES[f] for f in _HUGE_PAGES[args.huge_pages]) or "neither"))
  print(f"model: {args.stacks} stack(s), {args.features} features, depth {args.depth}, "
        f"stem {args.stem_features}, 16 keypoints, "
        f"{args.image_size}x{args.image_size}, dtype {args.dtype}"
        f"{', remat' if args.remat else ''}, conv gradient {args.conv_impl}; "
        f"{args.warmup} warm-up + {args.steps} timed step(s) per run, {args.repeats} run(s)")
  for framework in frameworks:
    print(f"step of {STEP_CONTENTS[framework]}")


def _run_all(args, frameworks: list[str], batches: list[int], threads: int
             ) -> dict[tuple[str, int], list[dict]]:
  """Every run of every (framework, batch), frameworks alternating; printed as they end."""
  results = {}
  for batch in batches:
    for r in range(args.repeats):
      for framework in frameworks:
        if r and "error" in results[(framework, batch)][-1]:
          continue  # it failed once (e.g. torch.compile unavailable): not again.
        busy = common.wait_until_idle(args.wait_idle)
        res = run_worker(args, framework, batch, threads)
        res["busy_cpus_before"] = busy
        results.setdefault((framework, batch), []).append(res)
        _print_run(res, f"  run {r + 1}: {NAMES[framework]:13s} batch {batch:3d}:", batch)
  return results


def _print_run(res: dict, lead: str, batch: int) -> None:
  if "error" in res:
    print(f"{lead} failed: {res['error']}", flush=True)
    return
  print(f"{lead} {batch / statistics.median(res['step_s']):7.3f} img/s "
        f"(steps {', '.join(f'{t:.2f}' for t in res['step_s'])} s; CPU "
        f"{', '.join(f'{t:.2f}' for t in res['cpu_s'])} s; {res['threads']} "
        f"thread(s); {res['isa']}; other load before the run: "
        f"{res['busy_cpus_before']:.2f} CPUs)", flush=True)
  if res.get("profile"):
    print("    profile (share of op time): " + ", ".join(
        f"{k} {100 * v:.0f}%" for k, v in res["profile"].items()), flush=True)


def main(argv=None) -> None:
  args = parse_args(argv)
  if args._worker:
    _worker(args)
    return
  frameworks = [f for f in args.frameworks.split(",") if f]
  if any(f.startswith("torch") for f in frameworks):
    try:
      import torch  # pylint: disable=g-import-not-at-top,unused-import
    except ImportError:
      print("torch not installed: measuring ours only (pip install -e '.[torch]')")
      frameworks = [f for f in frameworks if not f.startswith("torch")]
  batches = [int(b) for b in args.batches.split(",")]
  threads = args.threads or common.allowed_cpus()
  _header(args, frameworks, threads)
  results = _run_all(args, frameworks, batches, threads)
  print()
  summary = _summarise(results)
  _print_table(summary, frameworks, batches)
  found = ratios(summary, batches)
  if found:
    print()
  for batch in batches:
    for peer in ("torch", "torch_compile"):
      if f"{peer}_b{batch}" in found:
        print(f"batch {batch}: ours / {NAMES[peer]} = {found[f'{peer}_b{batch}']:.2f}x "
              f"images/s ({found[f'{peer}_b{batch}_cpu']:.2f}x images per CPU-second)")
  if args.json:
    common.write_json(args.json, {
        "args": vars(args), "cpu": common.cpu_model(), "cpu_flags": common.cpu_flags(),
        "machine": common.machine(), "date": common.utc_now(),
        "versions": common.versions(frameworks),
        "step_contents": {k: STEP_CONTENTS[k] for k in frameworks},
        "summary": {f"{k[0]}_b{k[1]}": v for k, v in summary.items()},
        "ratios": found, "results": {f"{k[0]}_b{k[1]}": v for k, v in results.items()},
        "table": _table(summary, frameworks, batches, found)}, config=vars(args))


if __name__ == "__main__":
  main()
