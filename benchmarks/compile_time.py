r"""Compile time and step time of the train step, stacks unrolled against scanned.

  python benchmarks/compile_time.py                 # thesis joint model, batch 4, CPU
  python benchmarks/compile_time.py --repeats=3     # alternating step runs, medians
  python benchmarks/compile_time.py --quick         # a tiny model: checks the script

Measures the thesis joint model's train step (configs/thesis.py's joint
model: 8 stacks, 256 features, depth 4, stem 128, 256 px; `common.joint_config`
at the thesis's batch of 4; `train.train_step` jitted as
`common.jax_train_step` builds it) with its stacks

* unrolled (`StackedHourglass(scan_stacks=False)`, a Python loop: how the
  model was compiled before),
* scanned (the default: one `nn.scan` over the stacks), and
* scanned with the scan's loop unrolled (`config.model.scan_unroll` = the
  stacks: the same parameters; XLA keeps each stack's activations in place
  instead of copying them into stacked buffers for the backward pass),

each in a fresh process without the persistent cache:

1. compile time: tracing and lowering (`jit(...).lower`) plus XLA's
   compilation (`.compile()`), wall and CPU seconds, at 8 and at 2 stacks;
2. step time: the median wall and CPU seconds of the compiled 8-stack step
   (all start from the same weights, so their first losses agree);
3. resumed: the scanned 8-stack step compiled by a second process with
   JAX's persistent compilation cache as `launch/` turns it on
   (`launch.common.enable_compilation_cache`, here in a temporary folder),
   after a first process filled it.

Goals: the scanned compile >= 4x faster than the unrolled one; the scanned
8-stack compile within 1.5x of the 2-stack one; the step within 5%; the
resumed compile under 5 s. On a machine shared with other jobs, wall times
stretch with the load; CPU seconds less so (both are printed, and the load
before each run). Prints a table and the goals; --json writes every run.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import common
import train_step

_WORKER = "--_worker"
# 'scan_unroll': scanned, the scan's loop unrolled (`StackedHourglass.scan_unroll`).
LAYOUTS = ("unrolled", "scanned", "scan_unroll")
GOALS = {"compile_speedup": 4.0, "stacks_growth": 1.5, "step_change": 0.05,
         "resumed_compile_s": 5.0}


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--stacks", default="2,8", help="the two stack counts compiled (few,many)")
  p.add_argument("--batch", type=int, default=4, help="batch size (the thesis's: 4)")
  p.add_argument("--steps", type=int, default=3, help="timed steps per step run")
  p.add_argument("--repeats", type=int, default=1,
                 help="step runs per layout (alternating); medians over runs")
  p.add_argument("--quick", action="store_true",
                 help="tiny model (2 and 4 stacks, 16 features, 32 px, batch 2, 1 step)")
  p.add_argument("--timeout", type=float, default=1800, help="seconds per worker")
  p.add_argument("--json", default="", help="also write every run to this file")
  p.add_argument(_WORKER, action="store_true", help=argparse.SUPPRESS)
  p.add_argument("--_layout", default="scanned", help=argparse.SUPPRESS)
  p.add_argument("--_nstacks", type=int, default=8, help=argparse.SUPPRESS)
  p.add_argument("--_cache", action="store_true", help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  args.model = common.JointModel()
  if args.quick:
    args.model = common.JointModel(features=16, depth=1, stem_features=16, image_size=32)
    if not args._worker:  # pylint: disable=protected-access  (a worker is told them)
      args.stacks, args.batch, args.steps = "2,4", 2, 1
  args.few, args.many = (int(s) for s in args.stacks.split(","))
  return args


# ----------------------------------------------------------------------------- worker


def _state(config, layout: str):
  """The train state, initialised in the scanned layout (one stack to compile)
  and, for 'unrolled', moved to per-stack modules: every layout starts equal."""
  import jax  # pylint: disable=g-import-not-at-top
  from triplet_pose import train  # pylint: disable=g-import-not-at-top
  from triplet_pose import workdir  # pylint: disable=g-import-not-at-top
  from triplet_pose.models import hourglass  # pylint: disable=g-import-not-at-top
  model = workdir.create_model(config)
  state = train.create_train_state(config, jax.random.key(0), model=model)
  if layout == "scanned":
    return state
  if layout == "scan_unroll":
    return state.replace(apply_fn=model.clone(scan_unroll=config.model.num_stacks).apply)
  variables = hourglass.unrolled_layout(
      {"params": state.params, "batch_stats": state.batch_stats}, config.model.num_stacks)
  return state.replace(apply_fn=model.clone(scan_stacks=False).apply,
                       params=variables["params"], batch_stats=variables["batch_stats"],
                       opt_state=state.tx.init(variables["params"]))


_EVENTS: dict[str, int] = {}  # JAX's monitoring events so far, by name


@functools.cache
def _count_events() -> None:
  """Counts JAX's events into `_EVENTS` from now on (once per process)."""
  from jax import monitoring  # pylint: disable=g-import-not-at-top
  monitoring.register_event_listener(
      lambda name, **kw: _EVENTS.__setitem__(name, _EVENTS.get(name, 0) + 1))


def measure_compile(model: common.JointModel, batch: int, *, layout: str = "scanned",
                    steps: int = 0) -> dict:
  """Compiles (and with `steps`, times) one layout's train step in this process.

  Returns:
    {'layout', 'stacks', 'batch', 'dtype', 'lower_s', 'lower_cpu_s', 'compile_s',
    'compile_cpu_s', 'total_s', 'cache_hits', 'cache_misses'} (the cache events
    of the whole call) and, with `steps`, 'step_s', 'step_cpu_s' and 'losses'
    (one untimed step first).
  """
  import jax  # pylint: disable=g-import-not-at-top
  from triplet_pose import train  # pylint: disable=g-import-not-at-top
  _count_events()
  hits, misses = (_EVENTS.get(f"/jax/compilation_cache/cache_{k}", 0) for k in ("hits", "misses"))
  config = common.joint_config(model, batch)
  state = _state(config, layout)
  device_batch = jax.device_put(common.fake_batch(batch, model.image_size))
  rng = jax.random.key(1)
  fn = jax.jit(functools.partial(train.train_step, config=config), donate_argnums=(0,))
  start, cpu = time.perf_counter(), time.process_time()
  lowered = fn.lower(state, device_batch, rng)
  lower_s, lower_cpu_s = time.perf_counter() - start, time.process_time() - cpu
  start, cpu = time.perf_counter(), time.process_time()
  compiled = lowered.compile()
  compile_s, compile_cpu_s = time.perf_counter() - start, time.process_time() - cpu
  out = {"layout": layout, "stacks": model.stacks, "batch": batch, "dtype": model.dtype,
         "lower_s": lower_s, "lower_cpu_s": lower_cpu_s, "compile_s": compile_s,
         "compile_cpu_s": compile_cpu_s, "total_s": lower_s + compile_s,
         "cache_hits": _EVENTS.get("/jax/compilation_cache/cache_hits", 0) - hits,
         "cache_misses": _EVENTS.get("/jax/compilation_cache/cache_misses", 0) - misses}
  if steps:
    step = common.JaxTrainStep(fn=compiled, state=state, batch=device_batch, rng=rng)
    losses = []
    times = common.time_steps(lambda i: losses.append(step(i)), 1, steps)
    out.update(step_s=times.step_s, step_cpu_s=times.cpu_s, losses=losses)
  return out


def worker(args) -> dict:
  """`measure_compile` of the run the driver asked for, in this fresh process."""
  from launch import common as launch_common  # pylint: disable=g-import-not-at-top
  _count_events()  # before the first compilation, so that every event counts
  if args._cache:  # pylint: disable=protected-access
    launch_common.enable_compilation_cache()
  model = dataclasses.replace(args.model, stacks=args._nstacks)  # pylint: disable=protected-access
  return measure_compile(model, args.batch, layout=args._layout, steps=args.steps)  # pylint: disable=protected-access


# ----------------------------------------------------------------------------- driver


def run_worker(args, layout: str, stacks: int, *, steps: int, cache_dir: str = "") -> dict:
  """One measurement in a fresh process; {'error': reason} when it fails."""
  cmd = [sys.executable, os.path.abspath(__file__), _WORKER, f"--_layout={layout}",
         f"--_nstacks={stacks}", f"--steps={steps}", f"--batch={args.batch}"]
  if args.quick:
    cmd.append("--quick")
  env = train_step.worker_env("jax", "native")
  if cache_dir:
    cmd.append("--_cache")
    env["TRIPLET_POSE_CACHE_DIR"] = cache_dir
  busy = common.busy_cpus()
  try:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False,
                          timeout=args.timeout)
  except subprocess.TimeoutExpired:
    return {"layout": layout, "stacks": stacks, "error": f"no result in {args.timeout:.0f} s"}
  lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
  if not lines:
    errors = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    return {"layout": layout, "stacks": stacks,
            "error": (errors[-1] if errors else f"exit status {proc.returncode}")[:300]}
  result = json.loads(lines[-1][len("RESULT "):])
  result["busy_cpus_before"] = busy
  print(f"  {layout:8s} {stacks} stacks: trace+lower {result['lower_s']:6.1f} s, XLA "
        f"{result['compile_s']:6.1f} s wall ({result['compile_cpu_s']:6.1f} s CPU)"
        + (f"; steps {', '.join(f'{t:.2f}' for t in result['step_s'])} s"
           if "step_s" in result else "")
        + (f"; cache hits {result['cache_hits']}, misses {result['cache_misses']}"
           if cache_dir else "") + f"; other load before: {busy:.1f} CPUs", flush=True)
  return result


def measure(args) -> dict:
  """Every run of the plan: compiles at both stack counts, steps, resumed compile."""
  runs = {"compile": [], "step": [], "resumed": []}
  for stacks in (args.many, args.few):
    for layout in LAYOUTS:
      runs["compile"].append(run_worker(args, layout, stacks, steps=0))
  for _ in range(args.repeats):
    for layout in LAYOUTS:
      runs["step"].append(run_worker(args, layout, args.many, steps=args.steps))
  with tempfile.TemporaryDirectory() as cache:
    for _ in range(2):  # the first fills the cache, the second is the resumed run
      runs["resumed"].append(run_worker(args, "scanned", args.many, steps=0, cache_dir=cache))
  return runs


def summarise(args, runs: dict) -> dict:
  """Medians per (layout, stacks), the ratios and the goals met."""
  def median(kind, key, layout, stacks=args.many):
    values = [r[key] if not isinstance(r[key], list) else statistics.median(r[key])
              for r in runs[kind] if r.get("layout") == layout and r.get("stacks") == stacks
              and key in r]
    return statistics.median(values) if values else float("nan")

  s = {}
  for layout in LAYOUTS:
    for stacks in (args.few, args.many):
      s[f"{layout}_{stacks}_compile_s"] = median("compile", "total_s", layout, stacks)
      s[f"{layout}_{stacks}_compile_cpu_s"] = (median("compile", "compile_cpu_s", layout, stacks)
                                               + median("compile", "lower_cpu_s", layout, stacks))
    s[f"{layout}_step_s"] = median("step", "step_s", layout)
    s[f"{layout}_step_cpu_s"] = median("step", "step_cpu_s", layout)
  resumed = runs["resumed"][-1] if runs["resumed"] else {}
  s["resumed_compile_s"] = resumed.get("total_s", float("nan"))
  s["resumed_xla_s"] = resumed.get("compile_s", float("nan"))
  s["resumed_cache_misses"] = resumed.get("cache_misses")
  u, c = f"unrolled_{args.many}", f"scanned_{args.many}"
  s["compile_speedup"] = s[f"{u}_compile_s"] / s[f"{c}_compile_s"]
  s["compile_speedup_cpu"] = s[f"{u}_compile_cpu_s"] / s[f"{c}_compile_cpu_s"]
  s["stacks_growth"] = s[f"{c}_compile_s"] / s[f"scanned_{args.few}_compile_s"]
  s["stacks_growth_cpu"] = s[f"{c}_compile_cpu_s"] / s[f"scanned_{args.few}_compile_cpu_s"]
  s["step_change"] = s["scanned_step_s"] / s["unrolled_step_s"] - 1
  s["step_change_cpu"] = s["scanned_step_cpu_s"] / s["unrolled_step_cpu_s"] - 1
  s["scan_unroll_compile_speedup"] = s[f"{u}_compile_s"] / s[f"scan_unroll_{args.many}_compile_s"]
  s["scan_unroll_step_change"] = s["scan_unroll_step_s"] / s["unrolled_step_s"] - 1
  firsts = {r["layout"]: r["losses"][0] for r in runs["step"] if r.get("losses")}
  if "unrolled" in firsts:
    s["first_loss_rel_diff"] = max(abs(v / firsts["unrolled"] - 1) for v in firsts.values())
  s["goals_met"] = {
      "compile_speedup": s["compile_speedup"] >= GOALS["compile_speedup"],
      "stacks_growth": s["stacks_growth"] <= GOALS["stacks_growth"],
      "step_change": abs(s["step_change"]) <= GOALS["step_change"],
      "resumed_compile_s": s["resumed_compile_s"] < GOALS["resumed_compile_s"]}
  return s


def headline(args, s: dict) -> dict:
  """The table the results file carries (benchmarks/report.py)."""
  f, m = args.few, args.many
  rows = [[f"compile, {m} stacks (s)", round(s[f"unrolled_{m}_compile_s"], 1),
           round(s[f"scanned_{m}_compile_s"], 1), f"{s['compile_speedup']:.1f}x faster",
           round(s[f"scan_unroll_{m}_compile_s"], 1),
           f"{s['scan_unroll_compile_speedup']:.1f}x faster"],
          [f"compile, {f} stacks (s)", round(s[f"unrolled_{f}_compile_s"], 1),
           round(s[f"scanned_{f}_compile_s"], 1),
           f"{s[f'unrolled_{f}_compile_s'] / s[f'scanned_{f}_compile_s']:.1f}x faster", "", ""],
          [f"compile, {m} / {f} stacks",
           f"{s[f'unrolled_{m}_compile_s'] / s[f'unrolled_{f}_compile_s']:.2f}x",
           f"{s['stacks_growth']:.2f}x", "", "", ""],
          [f"train step, {m} stacks (s)", round(s["unrolled_step_s"], 2),
           round(s["scanned_step_s"], 2), f"{100 * s['step_change']:+.1f}%",
           round(s["scan_unroll_step_s"], 2), f"{100 * s['scan_unroll_step_change']:+.1f}%"],
          ["resumed compile, persistent cache (s)", "", round(s["resumed_compile_s"], 1), "",
           "", ""]]
  return common.table(
      ["measurement", "unrolled (before)", "scanned (after)", "after vs before",
       "scanned, loop unrolled", "vs before"], rows,
      title=f"train step of the {m}-stack joint model ({args.model.features} features, "
            f"{args.model.image_size} px), batch {args.batch}, on the CPU",
      note="compile: tracing + lowering + XLA, wall seconds, fresh process, no "
           "persistent cache; step: median wall seconds; resumed: a second process "
           "with launch/'s persistent compilation cache")


def _print(args, s: dict, table: dict) -> None:
  print()
  widths = [max(len(str(r[i])) for r in [table["columns"], *table["rows"]])
            for i in range(len(table["columns"]))]
  for row in [table["columns"], *table["rows"]]:
    print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)))
  print(f"CPU seconds: compile {s['compile_speedup_cpu']:.1f}x faster scanned, "
        f"{args.many} / {args.few} stacks {s['stacks_growth_cpu']:.2f}x; step "
        f"{100 * s['step_change_cpu']:+.1f}%; resumed: XLA {s['resumed_xla_s']:.2f} s, "
        f"{s['resumed_cache_misses']} cache misses")
  if "first_loss_rel_diff" in s:
    print(f"first step's loss, scanned vs unrolled: relative difference "
          f"{s['first_loss_rel_diff']:.1e}")
  for goal, met in s["goals_met"].items():
    print(f"goal {goal} ({GOALS[goal]}): {'met' if met else 'NOT met'}")


def main(argv=None) -> None:
  args = parse_args(argv)
  if args._worker:  # pylint: disable=protected-access
    print("RESULT " + json.dumps(worker(args)), flush=True)
    return
  print(f"machine: {common.describe_machine()}")
  print("versions: " + ", ".join(f"{k} {v}" for k, v in common.versions().items()))
  m = args.model
  print(f"model: {args.few} and {args.many} stacks, {m.features} features, depth {m.depth}, "
        f"stem {m.stem_features}, {m.image_size} px, batch {args.batch}; {args.steps} timed "
        f"step(s) per run, {args.repeats} step run(s) per layout")
  runs = measure(args)
  failed = [r for rs in runs.values() for r in rs if "error" in r]
  if failed:
    for r in failed:
      print(f"  {r['layout']} {r['stacks']} stacks failed: {r['error']}")
    sys.exit(1)
  summary = summarise(args, runs)
  table = headline(args, summary)
  _print(args, summary, table)
  if args.json:
    config = {k: (vars(v) if k == "model" else v) for k, v in vars(args).items()}
    common.write_json(args.json, {"machine": common.machine(device=True),
                                  "versions": common.versions(), "goals": GOALS,
                                  "summary": summary, "runs": runs, "table": table},
                      config=config)
    print(f"wrote {args.json}")


if __name__ == "__main__":
  main()
