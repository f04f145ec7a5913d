r"""Images/s and peak memory of the jitted train step, against PyTorch in the same run.

  python benchmarks/train_step.py               # thesis joint model: 8 stacks, batch 4 and 16
  python benchmarks/train_step.py --quick       # 1 stack, batch 4
  python benchmarks/train_step.py --quick --repeats=3 --isa=avx2   # AVX2-only CPUs
  python benchmarks/train_step.py --demo_model --repeats=3   # the demo's model, batch 16
  python benchmarks/train_step.py --stacks=2 --batches=4 --repeats=3 \
      --xla_flags=--xla_cpu_enable_fast_math=true

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
import time

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
STEP_CONTENTS = {
    "jax": "ours: targets rendered + forward (train BN) + masked MSE/stack + backward "
           "+ grad norm + Adam, one jit, state donated, loss to host",
    "torch": "pytorch eager: zero_grad + forward (train BN) + MSE/stack + backward + "
             "Adam (foreach), targets precomputed, loss to host",
    "torch_compile": "pytorch compiled: as eager, forward+loss (and their backward) "
                     "under torch.compile, Adam eager",
}
NAMES = {"jax": "ours (jax)", "torch": "pytorch", "torch_compile": "torch.compile"}


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


# ----------------------------------------------------------------------------- workers


def _rss_mb() -> float:
  """The process's peak resident set size so far, in MiB (Linux: KiB units)."""
  import resource  # pylint: disable=g-import-not-at-top
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak_rss() -> bool:
  """Resets the kernel's RSS high-water mark (Linux >= 4.0); False if unable."""
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False


def _status_mb(field: str) -> float:
  """A /proc/self/status memory field (e.g. VmHWM) in MiB, NaN if unknown."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith(field + ":"):
          return int(line.split()[1]) / 1024
  except OSError:
    pass
  return float("nan")


def _current_rss_mb() -> float:
  try:
    with open("/proc/self/statm") as f:
      return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
  except OSError:
    return float("nan")


def _fake_batch(batch: int, image_size: int):
  from triplet_pose.data.fake import FakeIterator  # pylint: disable=g-import-not-at-top
  return next(FakeIterator(num_examples=batch, batch_size=batch,
                           image_size=image_size, seed=0))


def _config(args):
  from configs import joint  # pylint: disable=g-import-not-at-top
  config = joint.get_config()
  config.model.num_stacks = args.stacks
  config.model.num_features = args.features
  config.model.hourglass_depth = args.depth
  config.model.stem_features = args.stem_features
  config.model.dtype = args.dtype
  config.model.remat = args.remat
  config.input.image_size = args.image_size
  config.input.heatmap_size = args.image_size // 4
  config.input.batch_size = args._batch
  config.augment.enabled = False
  return config


def _time_steps(step, n_warmup: int, n_steps: int
                ) -> tuple[float, list[float], list[float], float]:
  """(first step's wall time, timed steps' wall and CPU times, their peak RSS).

  The peak RSS (MiB) is the high-water mark over the timed steps only
  (compilation excluded), NaN where the kernel cannot reset it.
  """
  first = None
  times, cpu_times = [], []
  reset = False
  for i in range(n_warmup + n_steps):
    if i == n_warmup:
      reset = _reset_peak_rss()
    t, c = time.perf_counter(), time.process_time()
    step(i)
    dt, dc = time.perf_counter() - t, time.process_time() - c
    if i == 0:
      first = dt
    if i >= n_warmup:
      times.append(dt)
      cpu_times.append(dc)
  return first, times, cpu_times, (_status_mb("VmHWM") if reset else float("nan"))


def worker_jax(args) -> dict:
  import functools  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from triplet_pose import train  # pylint: disable=g-import-not-at-top
  from triplet_pose import workdir  # pylint: disable=g-import-not-at-top
  base_rss = _current_rss_mb()
  config = _config(args)
  model = workdir.create_model(config).clone(conv_impl=args.conv_impl)
  state = train.create_train_state(config, jax.random.key(0), model=model)
  batch = jax.device_put({k: v for k, v in _fake_batch(args._batch, args.image_size).items()})
  step_fn = jax.jit(functools.partial(train.train_step, config=config),
                    donate_argnums=(0,))
  rng = jax.random.key(1)
  holder = {"state": state}

  def step(i):
    new_state, metrics = step_fn(holder["state"], batch, jax.random.fold_in(rng, i))
    jax.block_until_ready((new_state, metrics))
    holder["state"] = new_state
    holder["loss"] = float(metrics["loss"])

  first, times, cpu_times, step_rss = _time_steps(step, args.warmup, args.steps)
  profile = _profile_jax(step, args.warmup + args.steps) if args.profile else None
  device = jax.devices()[0]
  out = {"first_step_s": first, "step_s": times, "cpu_s": cpu_times,
         "step_peak_rss_mb": step_rss, "loss": holder["loss"],
         "device": f"{device.platform}:{device.device_kind}",
         # XLA:CPU's intra-op pool has one thread per CPU it may run on.
         "threads": len(os.sched_getaffinity(0)),
         "isa": "XLA_FLAGS=" + os.environ.get("XLA_FLAGS", "") + "; " + _native_report(),
         "profile": profile,
         "base_rss_mb": base_rss, "peak_rss_mb": _rss_mb()}
  stats = device.memory_stats() if device.platform != "cpu" else None
  if stats:
    out["device_peak_mb"] = stats.get("peak_bytes_in_use", 0) / 2**20
  return out


def _shares(seconds: dict[str, float]) -> dict[str, float]:
  total = sum(seconds.values()) or 1.0
  return {k: round(v / total, 3) for k, v in sorted(seconds.items(), key=lambda kv: -kv[1])}


def _profile_jax(step, i: int) -> dict[str, float]:
  """Share of op time (summed over threads) per kind of XLA:CPU thunk, one step."""
  import tempfile  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    with jax.profiler.trace(tmp):
      step(i)
    paths = [os.path.join(d, f) for d, _, fs in os.walk(tmp) for f in fs
             if f.endswith(".xplane.pb")]
    data = jax.profiler.ProfileData.from_file(paths[0])
  seconds = {}
  for plane in data.planes:
    for line in plane.lines:
      if "XLAEigen" not in line.name and "PjRtCpu" not in line.name:
        continue  # only the threads that run XLA:CPU's thunks
      for ev in line.events:
        name = ev.name
        if name.startswith("ThunkExecutor") or "Await" in name:
          continue
        kind = ("YNNPACK (convolutions, matrix products, sums)" if name.startswith("ynn")
                else "Eigen matrix products (dW)" if name.startswith(("dot", "custom"))
                else "XLA fusions (element-wise, reductions)")
        seconds[kind] = seconds.get(kind, 0.0) + ev.duration_ns / 1e9
  return _shares(seconds)


def _profile_torch(torch, step, i: int) -> dict[str, float]:
  """Share of op self time per kind of ATen operator, one step."""
  with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
    step(i)
  seconds = {}
  for ev in prof.key_averages():
    name = ev.key
    kind = ("convolutions" if "conv" in name else
            "batch norm" if "batch_norm" in name else
            "ReLU" if name in ("aten::clamp_min", "aten::threshold_backward", "aten::relu")
            else "other")
    seconds[kind] = seconds.get(kind, 0.0) + ev.self_cpu_time_total / 1e6
  return _shares(seconds)


def _torch_isa(torch) -> str:
  """ATen's CPU capability and the ISA oneDNN reports (its verbose header)."""
  capability = torch.backends.cpu.get_cpu_capability()
  sys.stdout.flush()
  # oneDNN prints "onednn_verbose,...,isa:<name>" on its first verbose
  # primitive; the driver reads it from this worker's stdout.
  with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
    torch.nn.functional.conv2d(torch.ones(4, 64, 32, 32), torch.ones(64, 64, 3, 3), padding=1)
  return f"aten={capability}"


def worker_torch(args) -> dict:
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from triplet_pose import inputs  # pylint: disable=g-import-not-at-top
  from triplet_pose import keypoints as kp  # pylint: disable=g-import-not-at-top
  from triplet_pose.models import torch_reference  # pylint: disable=g-import-not-at-top
  if args.threads:
    torch.set_num_threads(args.threads)
  config = _config(args)
  batch = _fake_batch(args._batch, args.image_size)
  with jax.default_device(jax.devices("cpu")[0]):
    targets, _ = inputs.targets(config, jax.tree.map(np.asarray, batch), kp.JOINTS)
  base_rss = _current_rss_mb()
  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  isa = _torch_isa(torch) if device.type == "cpu" and args.report_isa else ""
  images = torch.from_numpy(batch["image"].astype(np.float32) / 255.0).to(device)
  targets = torch.from_numpy(np.asarray(targets).transpose(0, 3, 1, 2).copy()).to(device)
  torch.manual_seed(0)
  net = torch_reference.posenet(args.stacks, num_features=args.features,
                                hourglass_depth=args.depth,
                                stem_features=args.stem_features).to(device).train()
  opt = torch.optim.Adam(net.parameters(), lr=2.5e-4)
  use_bf16 = args.dtype == "bfloat16"

  def forward_loss(images, targets):
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
      preds = net(images)
    return torch_reference.heatmap_loss(preds.float(), targets)

  if args._worker == "torch_compile":
    forward_loss = torch.compile(forward_loss)
  holder = {}

  def step(_):
    opt.zero_grad(set_to_none=True)
    loss = forward_loss(images, targets)
    loss.backward()
    opt.step()
    if device.type == "cuda":
      torch.cuda.synchronize()
    holder["loss"] = float(loss)

  first, times, cpu_times, step_rss = _time_steps(step, args.warmup, args.steps)
  profile = _profile_torch(torch, step, 0) if args.profile else None
  out = {"first_step_s": first, "step_s": times, "cpu_s": cpu_times,
         "step_peak_rss_mb": step_rss, "loss": holder["loss"],
         "device": str(device), "isa": isa, "profile": profile,
         "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
         "base_rss_mb": base_rss, "peak_rss_mb": _rss_mb()}
  if device.type == "cuda":
    out["device_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
  return out


def _worker(args) -> None:
  if args.threads:
    cpus = sorted(os.sched_getaffinity(0))[: args.threads]
    os.sched_setaffinity(0, cpus)
  fn = worker_jax if args._worker == "jax" else worker_torch
  result = fn(args)
  print("RESULT " + json.dumps(result), flush=True)


# ----------------------------------------------------------------------------- driver


def cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def versions(frameworks: list[str]) -> dict[str, str]:
  out = {"python": platform.python_version()}
  import jax  # pylint: disable=g-import-not-at-top
  import jaxlib  # pylint: disable=g-import-not-at-top
  import flax  # pylint: disable=g-import-not-at-top
  out.update(jax=jax.__version__, jaxlib=jaxlib.__version__, flax=flax.__version__)
  if "torch" in frameworks:
    try:
      import torch  # pylint: disable=g-import-not-at-top
      out["torch"] = torch.__version__
    except ImportError:
      pass
  return out


def _busy_cpus(seconds: float = 1.0) -> float:
  """CPUs kept busy by other processes over `seconds` (from /proc/stat)."""
  def sample():
    with open("/proc/stat") as f:
      values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values), idle
  try:
    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
  except OSError:
    return float("nan")
  total = max(total1 - total0, 1)
  return (1 - (idle1 - idle0) / total) * (os.cpu_count() or 1)


def _wait_until_idle(max_wait: float) -> float:
  """Waits (up to `max_wait` s) until < 0.25 CPU is busy; returns the last load."""
  deadline = time.time() + max_wait
  busy = _busy_cpus()
  while busy >= 0.25 and time.time() < deadline:
    busy = _busy_cpus(2.0)
  return busy


def _cpu_flags() -> str:
  """The vector extensions this CPU reports (AVX2, AVX-512 foundation, AMX)."""
  try:
    with open("/proc/cpuinfo") as f:
      flags = next((line.split(":", 1)[1].split() for line in f
                    if line.startswith("flags")), [])
  except OSError:
    return "unknown"
  return " ".join(f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16")
                  if f in flags) or "none of avx2/avx512"


def _native_report() -> str:
  """Which convolution code our step uses on the CPU (cpu_conv impl 'auto')."""
  if not native_kernels.available():
    return f"native kernels unavailable ({native_kernels.unavailable_reason()})"
  return f"native kernels: {native_kernels.vector_lanes()} floats/vector"


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
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, env.get("PYTHONPATH", "")]))
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
  print(f"machine: {cpu_model()} ({_cpu_flags()}), {os.cpu_count()} CPUs, {threads} "
        f"thread(s) for each framework; {platform.platform()}")
  print("versions: " + ", ".join(f"{k} {v}" for k, v in versions(frameworks).items()))
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
  threads = args.threads or len(os.sched_getaffinity(0))
  _header(args, frameworks, threads)

  results = {}
  for batch in batches:
    for r in range(args.repeats):
      for framework in frameworks:
        if r and "error" in results[(framework, batch)][-1]:
          continue  # it failed once (e.g. torch.compile unavailable): not again.
        busy = _wait_until_idle(args.wait_idle)
        res = run_worker(args, framework, batch, threads)
        res["busy_cpus_before"] = busy
        results.setdefault((framework, batch), []).append(res)
        if "error" in res:
          print(f"  run {r + 1}: {NAMES[framework]} batch {batch}: failed: {res['error']}",
                flush=True)
          continue
        print(f"  run {r + 1}: {NAMES[framework]:13s} batch {batch:3d}: "
              f"{batch / statistics.median(res['step_s']):7.3f} img/s "
              f"(steps {', '.join(f'{t:.2f}' for t in res['step_s'])} s; CPU "
              f"{', '.join(f'{t:.2f}' for t in res['cpu_s'])} s; {res['threads']} "
              f"thread(s); {res['isa']}; other load before the run: {busy:.2f} CPUs)",
              flush=True)
        if res.get("profile"):
          print("    profile (share of op time): " + ", ".join(
              f"{k} {100 * v:.0f}%" for k, v in res["profile"].items()), flush=True)

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
    with open(args.json, "w") as f:
      json.dump({"args": vars(args), "cpu": cpu_model(), "cpu_flags": _cpu_flags(),
                 "step_contents": {k: STEP_CONTENTS[k] for k in frameworks},
                 "summary": {f"{k[0]}_b{k[1]}": v for k, v in summary.items()},
                 "ratios": found,
                 "results": {f"{k[0]}_b{k[1]}": v for k, v in results.items()}}, f, indent=1)


if __name__ == "__main__":
  main()
