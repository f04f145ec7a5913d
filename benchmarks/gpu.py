r"""Accelerator benchmark: train step, compile time, simulator and video path against their peers.

  python benchmarks/gpu.py --json=gpu.json        # on a GPU: within one 10-minute call
  python benchmarks/gpu.py --platform=cpu --quick # tiny sizes on the CPU: checks the script

Measures, on whatever device JAX sees (or --platform; PyTorch on the same
device: CUDA when available), in one process:

1. compile: the time to trace, lower and compile our train step of the
   thesis joint model (8 stacks, 256 features, 256 px; stacks scanned) at
   batch 16 in float32 (benchmarks/compile_time.py's `measure_compile`);
   --compile_unrolled adds the same step with the stacks unrolled;
2. train step: that model in float32 and with bfloat16 activations
   (`config.model.dtype`; parameters stay float32) at batch 16 and 32: ours
   (`triplet_pose.train.train_step`, jitted) against PyTorch eager (with
   `torch.autocast` for bfloat16) on the reference graph, and with
   --frameworks=...,torch_compile against `torch.compile`
   (benchmarks/train_step_workers.py: `STEP_CONTENTS` says what each step
   includes); the first step's time includes our compilation;
3. simulator: 10,000 phosphenes at 256 px, batch 64 and 1: ours
   (`Simulator.run`, jit + lax.scan) against dynaphos' `GaussianSimulator`
   (benchmarks/phosphenes.py's measurements); dynaphos configurations whose
   (phosphenes x H x W) tensors would not fit are skipped and marked;
4. video: frames/s of `triplet_pose.prediction.stream.PhospheneStream`
   (crop, joint 8-stack + triplet 5-stack models, pose masks, simulator with
   its state carried over, side-by-side picture, keypoints back to frame
   pixels; no flip test) on in-memory 256x256 frames (decode and encode
   excluded); untrained thesis models, or --joint_workdir / --triplet_workdir.

Goals on a GPU: train step >= 1.0x PyTorch in float32, >= 2x with
bfloat16; >= 1,000 frames/s at 10,000 phosphenes / 256 px, batch 64; >= 30
frames/s end-to-end video with the 8 + 5 stack models. Each part has a time
budget (--budget_s, shared out in order); what does not fit is printed as
skipped with the reason. Prints the results and a table; writes JSON.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import traceback

# Both frameworks share the accelerator: JAX must not take 75% of its memory
# up front (set before JAX is imported; this script is an entry point).
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import common  # pylint: disable=g-import-not-at-top,wrong-import-position
import compile_time  # pylint: disable=g-import-not-at-top,wrong-import-position
import phosphenes as phosphene_bench  # pylint: disable=g-import-not-at-top,wrong-import-position
import train_step  # pylint: disable=g-import-not-at-top,wrong-import-position


def _parse(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--quick", action="store_true",
                 help="tiny model, simulator and video: checks the script on a CPU")
  p.add_argument("--platform", default="", choices=("", "cpu", "gpu", "tpu"),
                 help="JAX's platform (default: JAX's choice); 'cpu' hides GPUs from "
                      "PyTorch too")
  p.add_argument("--json", default="gpu_benchmark.json", help="results file")
  p.add_argument("--budget_s", type=float, default=None,
                 help="seconds for all parts (shares: compile 10%%, train 55%%, simulator "
                      "10%%, video 25%%); default 420, no limit with --quick")
  p.add_argument("--dtypes", default="float32,bfloat16", help="train-step compute dtypes")
  p.add_argument("--batches", default=None,
                 help="train-step batch sizes (default 16,32; --quick: 2)")
  p.add_argument("--parts", default="compile,train,simulator,video")
  p.add_argument("--frameworks", default="jax,torch",
                 help="any of jax, torch (eager), torch_compile")
  p.add_argument("--compile_unrolled", action="store_true",
                 help="also compile the train step with the stacks unrolled")
  p.add_argument("--joint_workdir", default="", help="trained joint model for the video")
  p.add_argument("--triplet_workdir", default="", help="trained triplet model for the video")
  args = p.parse_args(argv)
  if args.platform:
    # Before JAX's first device query. CUDA_VISIBLE_DEVICES keeps PyTorch off the GPUs.
    jax.config.update("jax_platforms", args.platform)
    if args.platform == "cpu":
      os.environ["CUDA_VISIBLE_DEVICES"] = ""
  args.dtypes = tuple(d for d in args.dtypes.split(",") if d)
  if args.quick:
    args.model = common.JointModel(stacks=2, features=32, stem_features=32, depth=2,
                                   image_size=64)
    args.batches, args.steps = args.batches or "2", 2
    args.sim_grid = [(100, 64, 1), (100, 64, 4)]
    args.video_stacks, args.video_frames, args.video_batch = (2, 1), 8, 4
    # torch.compile's C++ build of even a tiny model takes minutes on a CPU.
    args.frameworks = ",".join(f for f in args.frameworks.split(",") if f != "torch_compile")
  else:
    args.model = common.JointModel()  # the thesis joint model
    args.batches, args.steps = args.batches or "16,32", 5
    args.sim_grid = [(10000, 256, 64), (10000, 256, 1)]
    args.video_stacks, args.video_frames, args.video_batch = (8, 5), 256, 16
  args.batches = tuple(int(b) for b in args.batches.split(","))
  if args.budget_s is None:
    args.budget_s = float("inf") if args.quick else 420.0
  return args


class _Budget:
  """Seconds left for one part; `left()` <= 0 once it is spent."""

  def __init__(self, seconds: float):
    self.end = time.perf_counter() + seconds

  def left(self) -> float:
    return self.end - time.perf_counter()


def _device() -> str:
  d = jax.devices()[0]
  out = f"JAX {d.platform}:{d.device_kind}"
  try:
    import torch  # pylint: disable=g-import-not-at-top
    out += (f"; torch {torch.cuda.get_device_name(0)}" if torch.cuda.is_available()
            else "; torch cpu")
  except ImportError:
    out += "; torch not installed"
  return out + f"; CPU {common.cpu_model()}"


# ----------------------------------------------------------------------------- compile


def compile_part(args, budget: _Budget) -> list[dict]:
  """Our train step's trace + lower and XLA compile times (first batch, float32)."""
  rows = []
  for layout in ("scanned", "unrolled") if args.compile_unrolled else ("scanned",):
    row = {"part": "compile", "layout": layout, "stacks": args.model.stacks,
           "batch": args.batches[0], "dtype": "float32"}
    rows.append(row)
    if budget.left() <= 0:
      row["skipped"] = "compile time budget spent"
      continue
    try:
      row.update(compile_time.measure_compile(args.model, args.batches[0], layout=layout))
    except Exception as e:  # pylint: disable=broad-except
      row["skipped"] = _why(e)
  return rows


def _why(e: Exception) -> str:
  return f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"


# ----------------------------------------------------------------------------- train step


def _train_args(args, batch: int, dtype: str, framework: str) -> argparse.Namespace:
  ns = train_step.parse_args([])
  for field in ("stacks", "features", "depth", "stem_features", "image_size"):
    setattr(ns, field, getattr(args.model, field))
  ns.steps, ns.warmup, ns.dtype, ns._batch = args.steps, 1, dtype, batch
  ns._worker = framework
  ns.report_isa = False  # oneDNN's verbose ISA line would go to this process's stdout
  return ns


def train_part(args, budget: _Budget) -> list[dict]:
  """Images/s of every (dtype, batch, framework) that fits in the budget."""
  rows = []
  # The peers first: our first step includes XLA's compilation, so a budget
  # spent on it still leaves PyTorch's figure for that configuration.
  frameworks = sorted((f for f in args.frameworks.split(",") if f), key=lambda f: f == "jax")
  # Batch-major, so that a budget that runs out leaves both dtypes measured.
  for batch in args.batches:
    for dtype in args.dtypes:
      for framework in frameworks:
        row = {"part": "train", "dtype": dtype, "batch": batch, "framework": framework}
        rows.append(row)
        if budget.left() <= 0:
          row["skipped"] = "train-step time budget spent"
          continue
        ns = _train_args(args, batch, dtype, framework)
        worker = train_step.worker_jax if framework == "jax" else train_step.worker_torch
        try:
          res = worker(ns)
        except Exception as e:  # pylint: disable=broad-except
          # Out of memory, torch.compile unavailable: reported, not fatal.
          row["skipped"] = _why(e)
          continue
        step = float(np.median(res["step_s"]))
        row.update(img_s=batch / step, step_s=step, first_step_s=res["first_step_s"],
                   device_peak_mb=res.get("device_peak_mb"), loss=res["loss"])
        _release_torch_memory()
  for row in rows:
    ours = next((r for r in rows if r["framework"] == "jax" and r["dtype"] == row["dtype"]
                 and r["batch"] == row["batch"] and "img_s" in r), None)
    if ours and row["framework"] != "jax" and "img_s" in row:
      row["ours_over_this"] = ours["img_s"] / row["img_s"]
  return rows


def _release_torch_memory() -> None:
  if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
    sys.modules["torch"].cuda.empty_cache()


# ----------------------------------------------------------------------------- simulator


def _dynaphos_fits(n: int, res: int, batch: int) -> str:
  """'' when dynaphos' (batch x N x H x W) float32 tensors fit, else why not."""
  need_gb = 3 * n * res * res * 4 * max(batch, 1) / 2**30  # three live copies
  try:
    import torch  # pylint: disable=g-import-not-at-top
    have_gb = (torch.cuda.get_device_properties(0).total_memory / 2**30
               if torch.cuda.is_available() else os.sysconf("SC_PHYS_PAGES")
               * os.sysconf("SC_PAGE_SIZE") / 2**30 / 2)
  except ImportError:
    return "torch not installed"
  return "" if need_gb < have_gb else f"needs ~{need_gb:.0f} GB, {have_gb:.0f} GB available"


def simulator_part(args, budget: _Budget) -> list[dict]:
  """Frames/s of ours and dynaphos for every (phosphenes, px, batch)."""
  rows = []
  threads = len(os.sched_getaffinity(0))
  frames = 4 if args.quick else 16
  for n, res, batch in args.sim_grid:
    for framework in ("jax", "dynaphos"):
      row = {"part": "simulator", "phosphenes": n, "resolution": res, "batch": batch,
             "framework": framework}
      rows.append(row)
      why = ("simulator time budget spent" if budget.left() <= 0 else
             _dynaphos_fits(n, res, batch) if framework == "dynaphos" else "")
      if why:
        row["skipped"] = why
        continue
      try:
        if framework == "jax":
          res_ = phosphene_bench._measure_ours(n, res, batch, frames, 3, 0, threads)  # pylint: disable=protected-access
        else:
          res_ = phosphene_bench._measure_dynaphos(n, res, batch, 2, 0, threads)  # pylint: disable=protected-access
      except Exception as e:  # pylint: disable=broad-except
        row["skipped"] = _why(e)
        continue
      row.update(fps=res_["fps"], phosphenes=res_["n"])
      _release_torch_memory()
  for row in rows:
    if row["framework"] == "dynaphos" and "fps" in row:
      ours = rows[rows.index(row) - 1]
      if "fps" in ours:
        row["ours_over_this"] = ours["fps"] / row["fps"]
  return rows


# ----------------------------------------------------------------------------- video


def video_part(args, budget: _Budget) -> list[dict]:
  """End-to-end frames/s of the streaming video path, per stage."""
  row = {"part": "video", "batch": args.video_batch, "frames": args.video_frames,
         "models": "trained workdirs" if args.joint_workdir else
                   f"untrained {args.video_stacks[0]} + {args.video_stacks[1]} stacks"}
  try:
    from triplet_pose.prediction import predictor as predictor_lib  # pylint: disable=g-import-not-at-top
    from triplet_pose.prediction import renderer as renderer_lib  # pylint: disable=g-import-not-at-top
    from triplet_pose.prediction import stream as stream_lib  # pylint: disable=g-import-not-at-top
    import untrained  # pylint: disable=g-import-not-at-top  (imports the prediction code)
  except ImportError as e:
    row["skipped"] = f"no streaming video API yet ({e})"
    return [row]
  if budget.left() <= 0:
    row["skipped"] = "video time budget spent"
    return [row]
  try:
    predictor = (predictor_lib.Predictor(args.joint_workdir, args.triplet_workdir or None,
                                         batch_size=args.video_batch, flip_test=False)
                 if args.joint_workdir else untrained.predictor(
                     args.video_stacks, batch_size=args.video_batch, tiny=args.quick))
    if args.joint_workdir:  # the trained models measured, for the provenance block
      row["trained_models"] = {role: {"workdir": m.workdir, "step": m.step} for role, m in (
          ("joint", predictor.models.joint), ("triplet", predictor.models.triplet),
          ("combined", predictor.models.combined)) if m is not None}
    renderer = renderer_lib.PhospheneRenderer(num_phosphenes=100 if args.quick else 1000)
    live = stream_lib.PhospheneStream(predictor, renderer, batch_size=args.video_batch)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (args.video_frames, 256, 256, 3), dtype=np.uint8)
    live.process(list(frames[:args.video_batch]))  # compiles
    live.reset()
    live.times = stream_lib.StageTimes()
    start = time.perf_counter()
    count = sum(1 for _ in live.run(iter(frames)))
    seconds = time.perf_counter() - start
  except Exception as e:  # pylint: disable=broad-except
    row["skipped"] = _why(e)
    row["traceback"] = traceback.format_exc()[-2000:]
    return [row]
  row.update(fps=count / seconds, stages_ms=live.times.per_frame_ms(),
             summary=live.times.summary())
  return [row]


# ----------------------------------------------------------------------------- report


def _describe(row: dict) -> str:
  if row["part"] == "compile":
    what = (f"compile train step, {row['stacks']} stacks {row['layout']}, batch "
            f"{row['batch']:>3d} f32")
    value = (f"{row['total_s']:9.1f} s (trace + lower {row['lower_s']:.1f} s, XLA "
             f"{row['compile_s']:.1f} s)" if "total_s" in row else "")
  elif row["part"] == "train":
    what = f"train {args_dtype(row)} batch {row['batch']:>3d} {train_step.NAMES[row['framework']]}"
    value = (f"{row['img_s']:9.2f} img/s (first step {row['first_step_s']:.0f} s)"
             if "img_s" in row else "")
  elif row["part"] == "simulator":
    what = (f"simulator {row['phosphenes']:>6d} phosphenes {row['resolution']:>4d} px "
            f"batch {row['batch']:>3d} {'ours' if row['framework'] == 'jax' else 'dynaphos'}")
    value = f"{row['fps']:9.1f} frames/s" if "fps" in row else ""
  else:
    what = f"video ({row['models']}) batch {row['batch']}"
    value = f"{row['fps']:9.1f} frames/s" if "fps" in row else ""
  if "skipped" in row:
    return f"{what:60s} skipped: {row['skipped']}"
  ratio = f"  (ours {row['ours_over_this']:.2f}x)" if "ours_over_this" in row else ""
  extra = f"  [{row['summary']}]" if "summary" in row else ""
  return f"{what:60s} {value}{ratio}{extra}"


def args_dtype(row: dict) -> str:
  return {"float32": "f32 ", "bfloat16": "bf16"}[row["dtype"]]


def headline(compiled: list[dict], rows: list[dict]) -> dict:
  """The results' table (benchmarks/report.py): ours, the peer and the ratio per line."""
  lines = [[f"compile train step ({r['layout']} stacks), batch {r['batch']}",
            f"{r['total_s']:.1f} s", "", ""] for r in compiled if "total_s" in r]
  peers = {"torch": "pytorch", "torch_compile": "torch.compile", "dynaphos": "dynaphos"}
  for r in rows:
    if r.get("framework", "jax") == "jax" or "skipped" in r:
      continue  # ours, video (no peer) or not measured
    ours = next((o for o in rows if o.get("framework") == "jax" and "skipped" not in o and all(
        o.get(k) == r.get(k) for k in ("part", "dtype", "batch", "phosphenes", "resolution"))),
                None)
    unit, key = ("img/s", "img_s") if r["part"] == "train" else ("frames/s", "fps")
    what = (f"train step {r['dtype']}, batch {r['batch']}" if r["part"] == "train" else
            f"simulator {r['phosphenes']} phosphenes, {r['resolution']} px, batch {r['batch']}")
    lines.append([what, f"{ours[key]:.2f} {unit}" if ours else "-",
                  f"{peers[r['framework']]} {r[key]:.2f} {unit}",
                  f"{r['ours_over_this']:.2f}x" if "ours_over_this" in r else "-"])
  lines += [[f"video ({r['models']}), batch {r['batch']}", f"{r['fps']:.1f} frames/s", "", ""]
            for r in rows if r["part"] == "video" and "fps" in r]
  return common.table(["what", "ours", "peer", "ours / peer"], lines,
                      title="thesis joint model's train step, simulator and video on one device",
                      note="ours / peer: images or frames per second; compile: trace, lower "
                           "and XLA, no persistent cache")


def main(argv=None) -> None:
  args = _parse(argv)
  start = time.perf_counter()
  print(f"device: {_device()}; {platform.platform()}; load average {os.getloadavg()}")
  print("versions: " + ", ".join(f"{k} {v}" for k, v in common.versions(["torch"]).items()))
  m = args.model
  print(f"train step: {m.stacks} stack(s), {m.features} features, {m.image_size} px; "
        + "; ".join(train_step.STEP_CONTENTS[f] for f in args.frameworks.split(",") if f))
  if args.quick:
    print("--quick: tiny sizes; torch.compile left out (its C++ build takes minutes on a CPU)")
  parts = {"compile": (compile_part, 0.1), "train": (train_part, 0.55),
           "simulator": (simulator_part, 0.1), "video": (video_part, 0.25)}
  found = {}
  spare = 0.0
  for name in [p for p in args.parts.split(",") if p]:
    fn, share = parts[name]
    t = time.perf_counter()
    budget = _Budget(share * args.budget_s + spare)
    found[name] = fn(args, budget)
    spare = max(budget.left(), 0.0)  # time a part did not use goes to the next
    for row in found[name]:
      print("  " + _describe(row), flush=True)
    print(f"  ({name}: {time.perf_counter() - t:.0f} s)", flush=True)
  total = time.perf_counter() - start
  print(f"total {total:.0f} s; load average {os.getloadavg()}")
  compiled = found.pop("compile", [])
  rows = [row for part in found.values() for row in part]
  models = next((row.pop("trained_models") for row in rows if "trained_models" in row), None)
  table = headline(compiled, rows)
  print()
  for line in [table["columns"], *table["rows"]]:
    print(" | ".join(str(cell) for cell in line))
  config = {k: (vars(v) if k == "model" else v) for k, v in vars(args).items()}
  common.write_json(args.json, {
      "device": _device(), "date": common.utc_now(), "quick": args.quick, "seconds": total,
      "step_contents": train_step.STEP_CONTENTS, "compile": compiled, "rows": rows,
      "table": table}, config=config, models=models)
  print(f"wrote {args.json}")


if __name__ == "__main__":
  main()
