r"""Phosphene simulator speed and memory: ours (JAX) vs dynaphos (and pulse2percept).

  python benchmarks/phosphenes.py                 # full grid (several minutes)
  python benchmarks/phosphenes.py --quick         # ~1600 phosphenes, 256 px, batch 1
  python benchmarks/phosphenes.py --phosphenes=1600 --resolutions=256 --batches=1,64

For every (phosphenes, resolution, batch) it measures frames per second of a
simulation step (state update + rendering of every phosphene; a batch of B
counts as B frames) for our `Simulator.run` (jit, lax.scan; best of
`--repeats` calls), with the default options and with
`Options.dynaphos_compatible()` (dynaphos' behaviour: the path the
equivalence tests check), and for dynaphos' `GaussianSimulator.__call__`
(best of `--peer_frames` frames; and, where installed and batch is 1,
pulse2percept's `DynaphosModel.predict_percept` over `--peer_frames`
frames), all on the same phosphene positions (pulse2percept's electrodes are
placed where its own map sends them to those positions; the largest
distance left is printed), in the same run, and prints the ratios. Each
measurement runs in a fresh process so its peak memory (VmHWM above the
process' resident size before building the simulator) is its own.

Threads are pinned alike for every framework (`--threads`, default every
core this process may use): each process is bound to that many cores
(`sched_setaffinity`, which also sizes XLA's CPU thread pool), OpenMP/BLAS
get as many threads and torch `set_num_threads`; each row prints what each
framework reports. Peer configurations whose estimated time or memory
exceeds the budget flags are skipped and marked.

Timings on a shared CPU are disturbed by other jobs: the load average is
printed at the start and the end.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import time

from absl import app
from absl import flags

import common  # first: puts the repository on sys.path

_PHOSPHENES = flags.DEFINE_list("phosphenes", ["256", "1024", "1600"], "Phosphene counts.")
_RESOLUTIONS = flags.DEFINE_list("resolutions", ["128", "256", "512"], "Square image sizes.")
_BATCHES = flags.DEFINE_list("batches", ["1", "64"], "Batch sizes.")
_QUICK = flags.DEFINE_bool("quick", False, "Only 1600 phosphenes, 256 px, batch 1.")
_PEERS = flags.DEFINE_list("peers", ["dynaphos", "pulse2percept"], "Peers to compare with.")
_FRAMES = flags.DEFINE_integer("frames", 16, "Frames per timed call of ours (lax.scan).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls of ours (best is kept).")
_PEER_FRAMES = flags.DEFINE_integer("peer_frames", 3,
                                    "Timed frames of each peer (dynaphos: best frame).")
_PEER_MAX_SECONDS = flags.DEFINE_float("peer_max_seconds", 90.0,
                                       "Skip a peer config estimated to take longer.")
_PEER_MAX_GB = flags.DEFINE_float("peer_max_gb", 6.0,
                                  "Skip a peer config estimated to need more memory.")
_JSON = flags.DEFINE_string("json", None, "Also write the results to this JSON file.")
_THREADS = flags.DEFINE_integer("threads", None,
                                "Cores (and threads) of every framework; default: all "
                                "cores this process may use.")

# Rough costs of the peers on a 2-core CPU, used only to skip configurations
# that would not finish or fit (dynaphos keeps about 6 float32 N x H x W
# tensors plus 2 of N x H x W x B; pulse2percept loops over electrodes).
_DYNAPHOS_S_PER_ELEMENT = 4e-8  # Per N x H x W x B element and frame.
_DYNAPHOS_FLOATS = lambda batch: 6 + 2 * batch  # pylint: disable=unnecessary-lambda-assignment
_P2P_S_PER_ELEMENT = 6e-9


def _reset_peak() -> float:
  """Resets the RSS high-water mark (VmHWM) to the current RSS; returns that RSS (MiB)."""
  common.reset_peak_rss()
  return common.status_mb("VmRSS")


def _peak_above(base: float) -> float:
  """MiB of the RSS high-water mark above `base` (`_reset_peak`'s value)."""
  return common.status_mb("VmHWM") - base


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _pin(threads: int) -> str:
  """Binds this (fresh) process to `threads` cores, before any framework loads.

  XLA sizes its CPU thread pool from the cores the process may use; OpenMP
  and BLAS (numpy, pulse2percept, torch's kernels) read the variables.
  """
  cores = common.pin_cpus(threads)
  for name in _THREAD_VARIABLES:
    os.environ[name] = str(threads)
  return f"{len(cores)} cores"


def _positions(n: int, res: int, seed: int):
  from triplet_pose import phosphenes  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  params = phosphenes.default_params()
  params["run"]["resolution"] = [res, res]
  x, y = phosphenes.phosphenes_by_magnification(params, n, key=jax.random.PRNGKey(seed))
  kept = phosphenes.in_view(x, y, params["run"])
  return params, x[kept], y[kept]


def _measure_ours(n, res, batch, frames, repeats, seed, threads, compatible=False):
  pinned = _pin(threads)
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from triplet_pose import phosphenes  # pylint: disable=g-import-not-at-top
  params, x, y = _positions(n, res, seed)
  base = _reset_peak()
  options = (phosphenes.Options.dynaphos_compatible() if compatible
             else phosphenes.Options())
  sim = phosphenes.Simulator.create(params, x, y, options=options)
  amps = jax.numpy.asarray(np.random.default_rng(seed).uniform(
      0, 150e-6, (frames, batch, sim.num_phosphenes)).astype(np.float32))
  run = jax.jit(lambda s, a: s.run(a))
  run(sim, amps).block_until_ready()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    run(sim, amps).block_until_ready()
    times.append(time.perf_counter() - start)
  return {"n": sim.num_phosphenes, "fps": frames * batch / min(times),
          "peak_mb": _peak_above(base), "device": str(jax.devices()[0]),
          "threads": f"jax: {pinned} ({jax.devices()[0].platform})"}


def _measure_dynaphos(n, res, batch, frames, seed, threads):
  pinned = _pin(threads)
  import warnings  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  from dynaphos import simulator as dsim  # pylint: disable=g-import-not-at-top
  from dynaphos import utils as dut  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(threads)
  warnings.filterwarnings("ignore")
  params, x, y = _positions(n, res, seed)
  params["run"]["gpu"] = 0 if torch.cuda.is_available() else None
  params["run"]["batch_size"] = batch if batch > 1 else 0
  base = _reset_peak()
  sim = dsim.GaussianSimulator(params, dut.Map(x.copy(), y.copy()), np.random.default_rng(seed))
  shape = (batch, sim.num_phosphenes) if batch > 1 else (sim.num_phosphenes,)
  amp = torch.rand(shape, device=sim.data_kwargs["device"]) * 150e-6
  sim(amp)
  sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
  times = []
  for _ in range(frames):
    sync()
    start = time.perf_counter()
    sim(amp)
    sync()
    times.append(time.perf_counter() - start)
  return {"n": sim.num_phosphenes, "fps": batch / min(times),
          "peak_mb": _peak_above(base),
          "threads": f"torch: {pinned}, {torch.get_num_threads()} intra-op threads"}


def _measure_p2p(n, res, frames, seed, threads):
  pinned = _pin(threads)
  import warnings  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from pulse2percept.implants import DiskElectrode, ElectrodeArray, Implant  # pylint: disable=g-import-not-at-top
  from pulse2percept.models.cortex import DynaphosModel  # pylint: disable=g-import-not-at-top
  from pulse2percept.stimuli import BiphasicPulseTrain  # pylint: disable=g-import-not-at-top
  from triplet_pose.phosphenes import layout  # pylint: disable=g-import-not-at-top
  warnings.filterwarnings("ignore")
  # Our phosphene positions, and electrodes where pulse2percept's own V1 map
  # (Polimeni et al. 2006 with dynaphos' parameters) sends them.
  params, x, y = _positions(n, res, seed)
  probe = DynaphosModel(implant=Implant(ElectrodeArray([DiskElectrode(0, 0, 0, 100)])),
                        verbose=False)
  cx, cy = probe.visual_field_map.from_dva()["v1"](np.asarray(x), np.asarray(y))
  px, py = probe.visual_field_map.to_dva()["v1"](cx, cy)
  ok = np.isfinite(px) & np.isfinite(py)
  offset = float(np.max(np.hypot(px[ok] - x[ok], py[ok] - y[ok])))
  x_min, x_max, y_min, y_max = layout.view_bounds(params["run"])
  electrodes = [DiskElectrode(a, b, 0, 100) for a, b in zip(cx[ok], cy[ok])]
  base = _reset_peak()
  model = DynaphosModel(implant=Implant(ElectrodeArray(electrodes)), xrange=(x_min, x_max),
                        yrange=(y_min, y_max), step=(x_max - x_min) / (res - 1),
                        verbose=False).build()
  amps = np.random.default_rng(seed).uniform(50, 150, len(electrodes))
  source = {name: BiphasicPulseTrain(freq=300, amp=float(a), phase_dur=0.17, stim_dur=1000)
            for name, a in zip(model.implant.electrode_names, amps)}
  start = time.perf_counter()
  percept = model.predict_percept(source, t_percept=np.arange(frames) * model.dt)
  elapsed = time.perf_counter() - start
  assert percept.data.shape[:2] == (res, res), percept.data.shape
  return {"n": len(electrodes), "fps": frames / elapsed,
          "peak_mb": _peak_above(base), "position_error_deg": offset,
          "threads": f"pulse2percept (numpy): {pinned}, "
                     f"OMP/BLAS {os.environ['OMP_NUM_THREADS']} threads"}


def _in_fresh_process(fn, *args):
  ctx = multiprocessing.get_context("spawn")
  with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
    try:
      return pool.submit(fn, *args).result()
    except Exception as e:  # A peer failing must not stop the table.
      return {"error": f"{type(e).__name__}: {e}"}


def _installed(module: str) -> bool:
  import importlib.util  # pylint: disable=g-import-not-at-top
  return importlib.util.find_spec(module) is not None


def main(argv):
  del argv
  grid = ([(1600, 256, 1)] if _QUICK.value else
          [(int(n), int(r), int(b)) for b in _BATCHES.value for r in _RESOLUTIONS.value
           for n in _PHOSPHENES.value])
  peers = [p for p in _PEERS.value if _installed(p)]
  threads = _THREADS.value or common.allowed_cpus()
  import jax  # pylint: disable=g-import-not-at-top
  machine = common.machine()
  print(f"machine: {common.describe_machine(machine)}")
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}; peers: {peers or 'none installed'}")
  print(f"threads: every framework pinned to {threads} core(s) (--threads)")
  print(f"load average at start: {os.getloadavg()}")
  header = (f"{'N':>5} {'px':>4} {'B':>3} | {'ours f/s':>9} {'MB':>6} {'compat f/s':>10} | "
            f"{'dynaphos f/s':>12} {'MB':>6} {'ratio':>7} {'compat':>7} | "
            f"{'p2p f/s':>8} {'ratio':>7}")
  print(header)
  print("-" * len(header))
  results = []
  for n, res, batch in grid:
    row = {"phosphenes": n, "resolution": res, "batch": batch}
    args = (n, res, batch, _FRAMES.value, _REPEATS.value, 0, threads)
    row["ours"] = _in_fresh_process(_measure_ours, *args)
    row["ours_compatible"] = _in_fresh_process(_measure_ours, *args, True)
    elements = n * res * res * batch
    if "dynaphos" in peers:
      est_s = _DYNAPHOS_S_PER_ELEMENT * elements * (_PEER_FRAMES.value + 3)
      est_gb = 4 * _DYNAPHOS_FLOATS(batch) * n * res * res / 2 ** 30
      if est_s > _PEER_MAX_SECONDS.value or est_gb > _PEER_MAX_GB.value:
        row["dynaphos"] = {"skipped": f"est. {est_s:.0f} s, {est_gb:.1f} GB"}
      else:
        row["dynaphos"] = _in_fresh_process(_measure_dynaphos, n, res, batch,
                                            _PEER_FRAMES.value, 0, threads)
    if "pulse2percept" in peers and batch == 1:
      est_s = _P2P_S_PER_ELEMENT * n * res * res * (_PEER_FRAMES.value + 1)
      row["pulse2percept"] = (
          {"skipped": f"est. {est_s:.0f} s"} if est_s > _PEER_MAX_SECONDS.value else
          _in_fresh_process(_measure_p2p, n, res, _PEER_FRAMES.value, 0, threads))
    results.append(row)
    print(_format(row), flush=True)
  print(f"load average at end: {os.getloadavg()}")
  print("f/s: frames per second (a batch of B counts B frames); MB: peak resident "
        "memory above the process before building; ratio: ours / peer; compat: "
        "ours with Options.dynaphos_compatible() / dynaphos.")
  _print_threads_and_positions(results)
  if _JSON.value:
    common.write_json(_JSON.value, {
        "machine": common.describe_machine(machine), "machine_details": machine,
        "date": common.utc_now(), "threads": threads, "results": results,
        "table": _table(results)},
        config={h.name: h.value for h in globals().values() if isinstance(h, flags.FlagHolder)})


def _table(results) -> dict:
  """The headline table: frames/s of ours and dynaphos, and their ratio."""
  def fps(row, name):
    r = row.get(name, {})
    return f"{r['fps']:.1f}" if "fps" in r else (r.get("skipped") or r.get("error") or "-")

  rows = []
  for row in results:
    ours, peer = row["ours"], row.get("dynaphos", {})
    ratio = (f"**{ours['fps'] / peer['fps']:.1f}x**" if "fps" in ours and "fps" in peer
             else "-")
    rows.append([row["phosphenes"], row["resolution"], row["batch"], fps(row, "ours"),
                 fps(row, "ours_compatible"), fps(row, "dynaphos"), ratio])
  return common.table(
      ["phosphenes", "px", "batch", "ours f/s", "ours, dynaphos-compatible f/s",
       "dynaphos f/s", "ours / dynaphos"], rows,
      title="phosphene simulator, ours against dynaphos",
      note="f/s: frames per second (a batch of B counts B frames)")


def _print_threads_and_positions(results):
  """What each framework reported about its threads; pulse2percept's positions."""
  seen = {}
  for row in results:
    for name in ("ours", "ours_compatible", "dynaphos", "pulse2percept"):
      if "threads" in row.get(name, {}):
        seen.setdefault(name, row[name]["threads"])
  for name, threads in seen.items():
    print(f"threads of {name}: {threads}")
  errors = [r["pulse2percept"]["position_error_deg"] for r in results
            if "position_error_deg" in r.get("pulse2percept", {})]
  if errors:
    print(f"pulse2percept: electrodes placed at our phosphene positions through its own "
          f"map; largest distance of its phosphenes from ours {max(errors):.1e} deg")


def _format(row) -> str:
  ours = row["ours"]
  lead = f"{row['phosphenes']:>5} {row['resolution']:>4} {row['batch']:>3} | "
  if "error" in ours:
    return lead + ours["error"]
  compat = row.get("ours_compatible", {})
  compat_fps = compat.get("fps")

  def peer(name, with_memory):
    r = row.get(name)
    width = 12 if with_memory else 8
    blank = width + (7 if with_memory else 0) + 8 + (8 if with_memory else 0)
    if r is None:
      return f"{'-':>{blank}}"
    if "fps" not in r:
      return f"{(r.get('skipped') or r.get('error', ''))[:blank]:>{blank}}"
    memory = f" {r['peak_mb']:>6.0f}" if with_memory else ""
    ratio = f" {ours['fps'] / r['fps']:>6.0f}x"
    if with_memory:
      ratio += f" {compat_fps / r['fps']:>6.0f}x" if compat_fps else f" {'-':>7}"
    return f"{r['fps']:>{width}.2f}{memory}{ratio}"

  compat_text = f"{compat_fps:>10.1f}" if compat_fps else f"{compat.get('error', '-')[:10]:>10}"
  return (lead.replace(f"{row['phosphenes']:>5}", f"{ours['n']:>5}", 1)
          + f"{ours['fps']:>9.1f} {ours['peak_mb']:>6.0f} {compat_text} | "
          + f"{peer('dynaphos', True)} | " + peer("pulse2percept", False))


if __name__ == "__main__":
  app.run(main)
