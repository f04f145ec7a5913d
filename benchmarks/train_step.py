r"""Images/s and peak memory of the jitted train step, against PyTorch in the same run.

  python benchmarks/train_step.py               # thesis joint model: 8 stacks, batch 4 and 16
  python benchmarks/train_step.py --quick       # 1 stack, batch 4
  python benchmarks/train_step.py --stacks=2 --batches=4 --repeats=3 \
      --xla_flags=--xla_cpu_enable_fast_math=true

Ours: `triplet_pose.train.train_step` (real TrainState, Adam, masked MSE per
stack summed over stacks) under `jax.jit` with the state donated, on a fixed
batch of the 'fake' input (uint8 images 256x256, 16 joints). Peer (when
torch is installed): the reference graph in PyTorch
(`triplet_pose.models.torch_reference`), Adam, MSE per stack, the same
images and target heatmaps.

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

_WORKER = "--_worker"


def _parse(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--stacks", type=int, default=8)
  p.add_argument("--features", type=int, default=256)
  p.add_argument("--image_size", type=int, default=256)
  p.add_argument("--batches", default="4,16", help="comma-separated batch sizes")
  p.add_argument("--steps", type=int, default=None,
                 help="timed steps per run (default 3; 2 with --quick)")
  p.add_argument("--warmup", type=int, default=1, help="untimed steps (compile) per run")
  p.add_argument("--repeats", type=int, default=1, help="runs per (framework, batch)")
  p.add_argument("--frameworks", default="jax,torch")
  p.add_argument("--threads", type=int, default=0, help="CPU threads (0: all allowed)")
  p.add_argument("--dtype", default="float32", help="compute dtype: float32 or bfloat16")
  p.add_argument("--remat", action="store_true", help="rematerialise each hourglass (ours)")
  p.add_argument("--xla_flags", default="", help="appended to XLA_FLAGS for our workers")
  p.add_argument("--quick", action="store_true", help="1 stack, batch 4, 2 timed steps")
  p.add_argument("--wait_idle", type=float, default=0.0,
                 help="before each run, wait up to this many seconds for other "
                      "processes to leave the CPUs idle (shared machines)")
  p.add_argument("--json", default="", help="also write all results to this file")
  p.add_argument(_WORKER, default="", help=argparse.SUPPRESS)
  p.add_argument("--_batch", type=int, default=0, help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.quick:
    args.stacks, args.batches = 1, "4"
  if args.steps is None:
    args.steps = 2 if args.quick else 3
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


def _worker_jax(args) -> dict:
  import functools  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from triplet_pose import train  # pylint: disable=g-import-not-at-top
  base_rss = _current_rss_mb()
  config = _config(args)
  state = train.create_train_state(config, jax.random.key(0))
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
  device = jax.devices()[0]
  out = {"first_step_s": first, "step_s": times, "cpu_s": cpu_times,
         "step_peak_rss_mb": step_rss, "loss": holder["loss"],
         "device": f"{device.platform}:{device.device_kind}",
         "base_rss_mb": base_rss, "peak_rss_mb": _rss_mb()}
  stats = device.memory_stats() if device.platform != "cpu" else None
  if stats:
    out["device_peak_mb"] = stats.get("peak_bytes_in_use", 0) / 2**20
  return out


def _worker_torch(args) -> dict:
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from triplet_pose import inputs  # pylint: disable=g-import-not-at-top
  from triplet_pose.models import torch_reference  # pylint: disable=g-import-not-at-top
  if args.threads:
    torch.set_num_threads(args.threads)
  config = _config(args)
  batch = _fake_batch(args._batch, args.image_size)
  with jax.default_device(jax.devices("cpu")[0]):
    targets, _ = inputs.targets(config, jax.tree.map(np.asarray, batch))
  base_rss = _current_rss_mb()
  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  images = torch.from_numpy(batch["image"].astype(np.float32) / 255.0).to(device)
  targets = torch.from_numpy(np.asarray(targets).transpose(0, 3, 1, 2).copy()).to(device)
  torch.manual_seed(0)
  net = torch_reference.posenet(args.stacks, num_features=args.features).to(device).train()
  opt = torch.optim.Adam(net.parameters(), lr=2.5e-4)
  use_bf16 = args.dtype == "bfloat16"
  holder = {}

  def step(_):
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
      preds = net(images)
    loss = torch_reference.heatmap_loss(preds.float(), targets)
    loss.backward()
    opt.step()
    if device.type == "cuda":
      torch.cuda.synchronize()
    holder["loss"] = float(loss)

  first, times, cpu_times, step_rss = _time_steps(step, args.warmup, args.steps)
  out = {"first_step_s": first, "step_s": times, "cpu_s": cpu_times,
         "step_peak_rss_mb": step_rss, "loss": holder["loss"],
         "device": str(device), "threads": torch.get_num_threads(),
         "base_rss_mb": base_rss, "peak_rss_mb": _rss_mb()}
  if device.type == "cuda":
    out["device_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
  return out


def _worker(args) -> None:
  if args.threads:
    cpus = sorted(os.sched_getaffinity(0))[: args.threads]
    os.sched_setaffinity(0, cpus)
  fn = {"jax": _worker_jax, "torch": _worker_torch}[args._worker]
  result = fn(args)
  print("RESULT " + json.dumps(result), flush=True)


# ----------------------------------------------------------------------------- driver


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def _versions(frameworks: list[str]) -> dict[str, str]:
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


def _run_worker(args, framework: str, batch: int, threads: int) -> dict:
  cmd = [sys.executable, os.path.abspath(__file__), _WORKER, framework,
         "--_batch", str(batch), "--stacks", str(args.stacks),
         "--features", str(args.features), "--image_size", str(args.image_size),
         "--steps", str(args.steps), "--warmup", str(args.warmup),
         "--threads", str(threads), "--dtype", args.dtype]
  if args.remat:
    cmd.append("--remat")
  env = dict(os.environ)
  if framework == "jax" and args.xla_flags:
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + args.xla_flags).strip()
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, env.get("PYTHONPATH", "")]))
  proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
  for line in proc.stdout.splitlines():
    if line.startswith("RESULT "):
      return json.loads(line[len("RESULT "):])
  raise RuntimeError(f"{framework} worker (batch {batch}) failed:\n{proc.stderr[-3000:]}")


def main(argv=None) -> None:
  args = _parse(argv)
  if args._worker:
    _worker(args)
    return
  frameworks = [f for f in args.frameworks.split(",") if f]
  if "torch" in frameworks:
    try:
      import torch  # pylint: disable=g-import-not-at-top,unused-import
    except ImportError:
      print("torch not installed: measuring ours only (pip install -e '.[torch]')")
      frameworks.remove("torch")
  batches = [int(b) for b in args.batches.split(",")]
  threads = args.threads or len(os.sched_getaffinity(0))
  xla_flags = (os.environ.get("XLA_FLAGS", "") + " " + args.xla_flags).strip()
  print(f"machine: {_cpu_model()}, {os.cpu_count()} CPUs, {threads} thread(s) for "
        f"each framework; {platform.platform()}")
  print("versions: " + ", ".join(f"{k} {v}" for k, v in _versions(frameworks).items()))
  print(f"XLA_FLAGS (ours): {xla_flags or '(none)'}")
  print(f"model: {args.stacks} stack(s), {args.features} features, 16 keypoints, "
        f"{args.image_size}x{args.image_size}, dtype {args.dtype}"
        f"{', remat' if args.remat else ''}; {args.warmup} warm-up + {args.steps} "
        f"timed step(s) per run, {args.repeats} run(s)")

  results = {}
  for batch in batches:
    for r in range(args.repeats):
      for framework in frameworks:
        busy = _wait_until_idle(args.wait_idle)
        res = _run_worker(args, framework, batch, threads)
        res["busy_cpus_before"] = busy
        results.setdefault((framework, batch), []).append(res)
        print(f"  run {r + 1}: {framework:5s} batch {batch:3d}: "
              f"{batch / statistics.median(res['step_s']):7.3f} img/s "
              f"(steps {', '.join(f'{t:.2f}' for t in res['step_s'])} s; CPU "
              f"{', '.join(f'{t:.2f}' for t in res['cpu_s'])} s; other load "
              f"before the run: {busy:.2f} CPUs)", flush=True)

  print()
  header = (f"{'framework':10s} {'batch':>5s} {'img/s':>7s} {'best':>7s} {'step s':>7s} {'CPU s':>6s} "
            f"{'1st step s':>10s} {'RSS MB run':>10s} {'RSS MB steps':>12s} {'dev MB':>7s}")
  print(header)
  print("-" * len(header))
  summary = {}
  for (framework, batch), runs in results.items():
    step_s = statistics.median(statistics.median(r["step_s"]) for r in runs)
    best = batch / min(min(r["step_s"]) for r in runs)
    cpu_s = statistics.median(statistics.median(r["cpu_s"]) for r in runs)
    first = statistics.median(r["first_step_s"] for r in runs)
    peak = max(r["peak_rss_mb"] for r in runs)
    step_peak = max(r["step_peak_rss_mb"] for r in runs)
    dev = max(r.get("device_peak_mb", float("nan")) for r in runs)
    name = "ours (jax)" if framework == "jax" else "pytorch"
    summary[(framework, batch)] = (batch / step_s, batch / cpu_s)
    print(f"{name:10s} {batch:5d} {batch / step_s:7.3f} {best:7.3f} {step_s:7.2f} {cpu_s:6.2f} "
          f"{first:10.1f} {peak:10.0f} {step_peak:12.0f} {dev:7.0f}")
  print("(img/s: median over runs of each run's median step; best: fastest step; "
        "CPU s: process CPU time "
        "per step, all threads; RSS MB run: high-water mark of the whole worker, "
        "compilation included; RSS MB steps: high-water mark during the timed steps; "
        "dev MB: accelerator allocator peak)")
  if "jax" in frameworks and "torch" in frameworks:
    print()
    for batch in batches:
      wall = summary[("jax", batch)][0] / summary[("torch", batch)][0]
      cpu = summary[("jax", batch)][1] / summary[("torch", batch)][1]
      print(f"batch {batch}: ours / pytorch = {wall:.2f}x images/s "
            f"({cpu:.2f}x images per CPU-second)")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"args": vars(args), "xla_flags": xla_flags, "cpu": _cpu_model(),
                 "results": {f"{k[0]}_b{k[1]}": v for k, v in results.items()}}, f, indent=1)


if __name__ == "__main__":
  main()
