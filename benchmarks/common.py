"""What the benchmarks share: the machine, our train step, timing, memory, JSON.

The scripts beside this file import it as `import common`: run as
`python benchmarks/x.py`, a script's folder is first on `sys.path` (tests put
it there too). Nothing heavy is imported at module level, so that a driver
process that only starts workers stays light.

* machine: `cpu_model` (lscpu's model name), `cpu_flags` (vector
  extensions), `native_kernels_report`, `jax_device`, `versions`,
  `machine` (all of it, for a JSON file) and `describe_machine` (one line);
  `busy_cpus` / `wait_until_idle` (other jobs on a shared machine) and
  `pin_cpus`.
* our train step: `JointModel` (the measured model's size), `joint_config`,
  `fake_batch` and `jax_train_step` (state, batch and the jitted
  `train.train_step`, ready to time or to lower and compile).
* timing and memory: `call_times`, `median_ms`, `time_steps` (`StepTimes`),
  `shares`; `peak_rss_mb`, `reset_peak_rss`, `status_mb`, `current_rss_mb`.
* `utc_now`, `table` and `write_json`: the date, the headline table a
  results file carries for docs/performance.md (`report.py`), and the
  results file (with its `provenance` block, `triplet_pose.provenance`).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import importlib.metadata
import json
import os
import pathlib
import platform
import statistics
import sys
import time
from typing import Any, Callable

# Makes `triplet_pose`, `configs` and `launch` importable from a plain checkout.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(1, REPO)

from triplet_pose import provenance  # pylint: disable=g-import-not-at-top,wrong-import-position  (light)

# Vector extensions worth naming in a timing's machine line.
_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16")


# ----------------------------------------------------------------------------- machine


# The CPU's model name (lscpu's): the library's provenance owns it.
cpu_model = provenance.cpu_model


def cpu_flags() -> str:
  """The vector extensions this CPU reports (AVX2, AVX-512 foundation, AMX)."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      flags = next((line.split(":", 1)[1].split() for line in f
                    if line.startswith("flags")), [])
  except OSError:
    return "unknown"
  return " ".join(f for f in _FLAGS if f in flags) or "none of avx2/avx512"


def allowed_cpus() -> int:
  """CPUs this process may run on (its affinity mask)."""
  return len(os.sched_getaffinity(0))


def native_kernels_report() -> str:
  """Which convolution code our step uses on the CPU (cpu_conv impl 'auto')."""
  from triplet_pose.models import native_kernels  # pylint: disable=g-import-not-at-top
  if not native_kernels.available():
    return f"native kernels unavailable ({native_kernels.unavailable_reason()})"
  return f"native kernels: {native_kernels.vector_lanes()} floats/vector"


def jax_device() -> str:
  """JAX's first device as 'platform:kind' ('cpu:cpu', 'gpu:NVIDIA H100 80GB HBM3')."""
  import jax  # pylint: disable=g-import-not-at-top
  device = jax.devices()[0]
  return f"{device.platform}:{device.device_kind}"


def versions(frameworks: list[str] = ()) -> dict[str, str]:
  """Python's, JAX's and Flax's versions, and PyTorch's when a framework is torch."""
  out = {"python": platform.python_version()}
  names = ["jax", "jaxlib", "flax"]
  if any(f.startswith("torch") for f in frameworks):
    names.append("torch")
  for name in names:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      pass
  return out


def machine(*, device: bool = False) -> dict[str, Any]:
  """The machine of a measurement, for its JSON file.

  Args:
    device: also ask JAX for its first device (imports JAX).
  """
  out = {"cpu": cpu_model(), "cpu_flags": cpu_flags(), "cpus": os.cpu_count(),
         "cpus_allowed": allowed_cpus(), "platform": platform.platform()}
  if device:
    out["device"] = jax_device()
  return out


def describe_machine(found: dict[str, Any] | None = None) -> str:
  """`machine()` in one line: model (flags), CPUs, OS[, device]."""
  m = found or machine()
  line = (f"{m['cpu']} ({m['cpu_flags']}), {m['cpus']} CPUs ({m['cpus_allowed']} allowed), "
          f"{m['platform']}")
  return line + (f"; JAX device {m['device']}" if "device" in m else "")


def pin_cpus(threads: int) -> list[int]:
  """Binds this process to its first `threads` allowed CPUs (0: leaves it); returns them.

  Do it before a framework loads: XLA sizes its CPU thread pool from the
  CPUs the process may use.
  """
  cpus = sorted(os.sched_getaffinity(0))
  if threads:
    cpus = cpus[:threads]
    os.sched_setaffinity(0, cpus)
  return cpus


def busy_cpus(seconds: float = 1.0) -> float:
  """CPUs kept busy by other processes over `seconds` (from /proc/stat)."""
  def sample():
    with open("/proc/stat", encoding="utf-8") as f:
      values = [int(v) for v in f.readline().split()[1:]]
    return sum(values), values[3] + values[4]  # total, idle + iowait
  try:
    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
  except OSError:
    return float("nan")
  total = max(total1 - total0, 1)
  return (1 - (idle1 - idle0) / total) * (os.cpu_count() or 1)


def wait_until_idle(max_wait: float) -> float:
  """Waits (up to `max_wait` s) until < 0.25 CPU is busy; returns the last load."""
  deadline = time.time() + max_wait
  busy = busy_cpus()
  while busy >= 0.25 and time.time() < deadline:
    busy = busy_cpus(2.0)
  return busy


# ----------------------------------------------------------------------------- our train step


@dataclasses.dataclass(frozen=True)
class JointModel:
  """The size of the joint model a train-step benchmark measures (default: the thesis')."""
  stacks: int = 8
  features: int = 256
  depth: int = 4  # levels per hourglass
  stem_features: int = 128
  image_size: int = 256
  dtype: str = "float32"  # compute dtype: float32 or bfloat16
  remat: bool = False

  @classmethod
  def from_args(cls, args: Any) -> "JointModel":
    """From an argparse namespace with these fields' names."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def joint_config(model: JointModel, batch: int):
  """configs/joint.py at `model`'s size and batch `batch`, augmentation off."""
  from configs import joint  # pylint: disable=g-import-not-at-top
  config = joint.get_config()
  config.model.num_stacks = model.stacks
  config.model.num_features = model.features
  config.model.hourglass_depth = model.depth
  config.model.stem_features = model.stem_features
  config.model.dtype = model.dtype
  config.model.remat = model.remat
  config.input.image_size = model.image_size
  config.input.heatmap_size = model.image_size // 4
  config.input.batch_size = batch
  config.augment.enabled = False
  return config


def fake_batch(batch: int, image_size: int) -> dict[str, Any]:
  """One batch of the fake dataset (uint8 images, keypoints), seed 0, on the host."""
  from triplet_pose.data.fake import FakeIterator  # pylint: disable=g-import-not-at-top
  return next(FakeIterator(num_examples=batch, batch_size=batch,
                           image_size=image_size, seed=0))


@dataclasses.dataclass
class JaxTrainStep:
  """Our jitted train step with its state and batch on the device.

  `step(i)` runs step i (key folded from `rng`), waits for it and keeps the
  new state and the loss; `fn.lower(state, batch, rng)` gives the
  compilation alone.
  """
  fn: Any  # jax.jit(train.train_step), state donated
  state: Any
  batch: Any
  rng: Any
  loss: float = float("nan")

  def __call__(self, i: int) -> float:
    import jax  # pylint: disable=g-import-not-at-top
    state, metrics = self.fn(self.state, self.batch, jax.random.fold_in(self.rng, i))
    jax.block_until_ready((state, metrics))
    self.state, self.loss = state, float(metrics["loss"])
    return self.loss


def jax_train_step(config, *, conv_impl: str = "auto", seed: int = 0) -> JaxTrainStep:
  """`train.train_step` of `config`'s model under jit, on a fake batch.

  Args:
    config: an experiment config (`joint_config`).
    conv_impl: our convolutions' gradient (`cpu_conv.conv2d` impl).
    seed: parameters from key `seed`, step keys from `seed + 1`.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from triplet_pose import train  # pylint: disable=g-import-not-at-top
  from triplet_pose import workdir  # pylint: disable=g-import-not-at-top
  model = workdir.create_model(config).clone(conv_impl=conv_impl)
  state = train.create_train_state(config, jax.random.key(seed), model=model)
  batch = jax.device_put(fake_batch(config.input.batch_size, config.input.image_size))
  fn = jax.jit(functools.partial(train.train_step, config=config), donate_argnums=(0,))
  return JaxTrainStep(fn=fn, state=state, batch=batch, rng=jax.random.key(seed + 1))


# ----------------------------------------------------------------------------- timing


def call_times(fn: Callable[[], Any], repeats: int, *, warmup: int = 1) -> list[float]:
  """Wall seconds of `repeats` calls of `fn` after `warmup` untimed ones.

  `fn` must wait for its result (`jax.block_until_ready`).
  """
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return times


def median_ms(fn: Callable[[], Any], repeats: int) -> float:
  """Median milliseconds of `repeats` calls after one warm-up call."""
  return 1000.0 * statistics.median(call_times(fn, repeats))


@dataclasses.dataclass
class StepTimes:
  """The timings of `time_steps`."""
  first_s: float  # the first step's wall time (compilation included)
  step_s: list[float]  # the timed steps' wall times
  cpu_s: list[float]  # and their process CPU times (all threads)
  peak_rss_mb: float  # high-water mark over the timed steps; NaN where unknown


def time_steps(step: Callable[[int], Any], warmup: int, steps: int) -> StepTimes:
  """Runs step(0), ..., step(warmup + steps - 1); times the last `steps`.

  The peak RSS is the kernel's high-water mark reset before the timed steps,
  so compilation is not in it.
  """
  first, times, cpu_times, reset = float("nan"), [], [], False
  for i in range(warmup + steps):
    if i == warmup:
      reset = reset_peak_rss()
    t, c = time.perf_counter(), time.process_time()
    step(i)
    dt, dc = time.perf_counter() - t, time.process_time() - c
    if i == 0:
      first = dt
    if i >= warmup:
      times.append(dt)
      cpu_times.append(dc)
  return StepTimes(first, times, cpu_times, status_mb("VmHWM") if reset else float("nan"))


def shares(seconds: dict[str, float]) -> dict[str, float]:
  """Each kind's share of the total, largest first (profiles)."""
  total = sum(seconds.values()) or 1.0
  return {k: round(v / total, 3) for k, v in sorted(seconds.items(), key=lambda kv: -kv[1])}


# ----------------------------------------------------------------------------- memory


def peak_rss_mb() -> float:
  """The process's peak resident set size so far, in MiB (Linux: KiB units)."""
  import resource  # pylint: disable=g-import-not-at-top
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
  """Resets the kernel's RSS high-water mark (VmHWM; Linux >= 4.0); False if unable."""
  try:
    with open("/proc/self/clear_refs", "w", encoding="utf-8") as f:
      f.write("5")
    return True
  except OSError:
    return False


def status_mb(field: str) -> float:
  """A /proc/self/status memory field (VmHWM, VmRSS) in MiB, NaN if unknown."""
  try:
    with open("/proc/self/status", encoding="utf-8") as f:
      for line in f:
        if line.startswith(field + ":"):
          return int(line.split()[1]) / 1024
  except OSError:
    pass
  return float("nan")


def current_rss_mb() -> float:
  """The process's resident set size now, in MiB."""
  try:
    with open("/proc/self/statm", encoding="utf-8") as f:
      return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
  except OSError:
    return float("nan")


# ----------------------------------------------------------------------------- results


def utc_now() -> str:
  """The date and time of a measurement, e.g. '2025-01-31 14:05 UTC'."""
  return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def table(columns: list[str], rows: list[list[Any]], *, title: str = "",
          note: str = "") -> dict[str, Any]:
  """A benchmark's headline table, as its results file carries it.

  `report.py` writes it into docs/performance.md under the command, machine
  and date of the run, so the table a benchmark prints and the one the docs
  show come from the same numbers.

  Args:
    columns: the column headings.
    rows: one list of cells per row (numbers are written as given: round them).
    title: what the table measures, one line.
    note: what the columns mean, one line or a few.
  """
  if any(len(row) != len(columns) for row in rows):
    raise ValueError(f"every row needs {len(columns)} cells ({columns})")
  return {"title": title, "columns": list(columns), "rows": [list(r) for r in rows],
          "note": note}


def write_json(path: str | pathlib.Path, value: dict[str, Any], *, config: Any = None,
               models: dict[str, Any] | None = None, indent: int = 1) -> pathlib.Path:
  """Writes a benchmark's results whole (no half-written file), with their
  `provenance` block and, beside them, the arguments it hashes.

  Args:
    path: the results file.
    value: the results (JSON-able; other types are written as str).
    config: the benchmark's arguments (`vars(args)`, the flags' values).
    models: {name: {'workdir', 'step'}} of trained models measured.
    indent: of the JSON.
  """
  value = {**value, provenance.KEY: provenance.provenance(config=config, models=models)}
  return provenance.write_json(path, json.loads(json.dumps(value, default=str)), indent=indent)
