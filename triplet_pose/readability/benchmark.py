"""The readability benchmark: observer PCKh per (protocol, representation, N).

For every cell of the grid (`config.representations` x
`config.num_phosphenes`) and both reading protocols (`protocols.py`:
`ideal`, a fresh reader per cell; `common`, one frozen reader trained on a
mix of every drawn representation), `config.seeds` readers are scored on
held-out validation figures, from their true pose and, when trained pose
models are given, from the models' predicted pose. `learned` is an encoder
trained against the frozen common reader of the same seed, within the
drawn representations' median budget (`learned.py`). The first electrode
layout (`config.layouts[0]`) is the table's; the others check that the
answer does not hang on one layout (drawn representations: the common
readers, and ideal readers of `config.second_layout_ideal_seeds`).

* `benchmark_config`: the grid, data, readers and statistics (full, quick, smoke).
* `run_benchmark`: runs or resumes the grid, then assembles results.json
  (`assemble.assemble`: means, bootstrap CIs, paired tests).

A re-run reuses what the workdir keeps: `data.npz`, `predictions.npz`,
`masks/`, `images/` (uint8 phosphene images per condition), `readers/`,
`encoders/`, `runs.json` (every finished reader's per-figure scores:
finished runs are skipped) and `examples/`.
"""

from __future__ import annotations

import ctypes
import functools
import json
import pathlib
import time
from typing import Any, Callable

import ml_collections
import numpy as np
from absl import logging

from triplet_pose import metric_writer
from triplet_pose import provenance
from triplet_pose.readability import assemble as assemble_lib
from triplet_pose.readability import cells as cells_lib
from triplet_pose.readability import data as data_lib
from triplet_pose.readability import learned as learned_lib
from triplet_pose.readability import observer as observer_lib
from triplet_pose.readability import outputs
from triplet_pose.readability import protocols
from triplet_pose.readability import representations as reps

SIZES = ("full", "quick", "smoke")


def benchmark_config(size: str = "full") -> ml_collections.ConfigDict:
  """The grid, data, readers and statistics of a benchmark run.

  Args:
    size: 'full' (the README's grid: 8 representations x 4 phosphene
      counts x 3 seeds, both protocols, a second layout), 'quick' (4 x 2 x
      3, small readers: minutes) or 'smoke' (seconds: tests).
  """
  if size not in SIZES:
    raise ValueError(f"size must be one of {SIZES}, got {size!r}")
  c = ml_collections.ConfigDict()
  c.representations = tuple(reps.REGISTRY)
  c.num_phosphenes = (1000, 300, 3000, 100)  # run in this order; tables sort them.
  c.num_train = 1500
  c.num_validation = 200
  c.data_seed = 0  # the demo dataset's seed: its validation figures.
  c.simulator_resolution = 128  # rendered, then pooled to observer.image_size.
  c.line_width = 2.5  # mask pixels at 128 px: the demo's 5 px at 256.
  c.frames = 10  # frames of constant stimulation (brightness has settled).
  c.seeds = (0, 1, 2)  # reader seeds (ideal and common readers, learned encoders).
  c.layouts = (0, 1)  # electrode-layout seeds: the first is the table's, the rest a check.
  c.second_layout_ideal_seeds = (0,)  # ideal readers also trained on the other layouts.
  c.example_index = 0  # the validation person of the example grid.
  c.bootstrap = 1000  # resamples of the CIs and paired tests.
  c.observer = observer_lib.observer_config()
  c.common = ml_collections.ConfigDict(dict(steps=1200))  # the common reader's steps.
  c.learned = learned_lib.learned_config()
  if size == "quick":
    c.representations = ("joints", "triplet", "silhouette", "learned")
    c.num_phosphenes = (1000, 100)
    c.num_train, c.num_validation = 300, 100
    c.observer.steps = 80
    c.common.steps = 240
    c.learned.steps = 40
    c.learned.batch_size = 16
    c.second_layout_ideal_seeds = ()
  elif size == "smoke":
    c.representations = ("image_edges", "joints", "learned")
    c.num_phosphenes = (100,)
    c.num_train, c.num_validation = 16, 8
    c.simulator_resolution = 64
    c.line_width = 1.5
    c.frames = 3
    c.seeds = (0, 1)
    c.observer.steps = 2
    c.observer.batch_size = 4
    c.observer.eval_batch_size = 8
    # The smallest observer that compiles (compilation is most of its time).
    c.observer.image_size = 32
    c.observer.hourglass_depth = 1
    c.observer.num_features = 16
    c.observer.optimizer.warmup_steps = 0
    c.common.steps = 2
    c.learned.steps = 2
    c.learned.batch_size = 4
    c.learned.features = 4
    c.bootstrap = 50
  return c


def _fingerprint(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """What finished runs depend on (the common reader's mix is the whole grid)."""
  keep = {k: v for k, v in config.to_dict().items() if k != "example_index"}
  return json.loads(json.dumps(keep, default=list))


def _score_true_and_predicted(grid: protocols.Grid, reader, images) -> dict[str, Any]:
  c, val = grid.config, grid.data["validation"]
  out = {"true": cells_lib.score(reader, images["validation"], val, config=c),
         "predicted": None}
  if "predicted" in images:
    out["predicted"] = cells_lib.score(reader, images["predicted"], val, config=c)
  elif grid.data.get("predicted"):  # not drawn from the pose (image edges): the same images
    out["predicted"] = out["true"]
  return out


def _ideal_run(grid: protocols.Grid, name: str, n: int, layout: int, seed: int) -> dict[str, Any]:
  """A fresh reader of one condition; scored there, and at the other N (first layout)."""
  images = protocols.images(grid, name, n, layout, seed)
  # Kept: the experiment's trials are answered by it (`trials.py`).
  reader = protocols.load_or_train(
      protocols.reader_path(grid.workdir, "ideal", seed=seed, representation=name,
                            num_phosphenes=n, layout=layout),
      lambda: cells_lib.train_reader(images["train"], grid.data["train"]["joints"],
                                     config=grid.config, seed=seed,
                                     log=grid.log_step("observer")))
  run = _score_true_and_predicted(grid, reader, images)
  if layout == grid.config.layouts[0]:
    run["transfer"] = {str(other): cells_lib.score(
        reader, protocols.images(grid, name, other, layout, seed)["validation"],
        grid.data["validation"], config=grid.config)
                       for other in grid.config.num_phosphenes if other != n}
  return run


def _common_run(grid: protocols.Grid, name: str, n: int, layout: int, seed: int) -> dict[str, Any]:
  """The frozen common reader on one condition, and on it within the median budget."""
  reader = protocols.common_reader(grid, seed)
  images = protocols.images(grid, name, n, layout, seed)
  run = _score_true_and_predicted(grid, reader, images)
  if layout == grid.config.layouts[0]:
    rep = reps.get(name)
    if rep.kind == "learned":
      run["equal_budget"] = run["true"]  # trained within it
    else:
      capped = cells_lib.condition_images(rep, n, grid.data, config=grid.config, layout=layout,
                                          workdir=grid.workdir,
                                          budget=protocols.learned_limits(grid, n, layout))
      run["equal_budget"] = cells_lib.score(reader, capped["validation"],
                                            grid.data["validation"], config=grid.config)
  return run


def _plan(grid: protocols.Grid) -> list[tuple[str, float, Callable[[], dict[str, Any]]]]:
  """The runs still to do, in order, with their relative cost (for the ETA)."""
  c = grid.config
  first, *others = c.layouts
  todo = []
  ratio = lambda steps: steps / max(c.observer.steps, 1)
  readers_pending = {s for s in c.seeds
                     if not protocols.reader_path(grid.workdir, "common", seed=s).exists()}
  encoders_seen = set()

  def add(protocol, name, n, layout, seed):
    key = assemble_lib.run_key(protocol, name, n, layout, seed)
    if key in grid.runs:
      return
    cost = 1.0 if protocol == "ideal" else 0.1
    if seed in readers_pending:
      cost += ratio(c.common.steps)
      readers_pending.discard(seed)
    encoder = (n, layout, seed)
    if reps.get(name).kind == "learned" and encoder not in encoders_seen:
      encoders_seen.add(encoder)
      if not (grid.workdir / "encoders" / f"L{layout}_{n}_s{seed}.msgpack").exists():
        cost += 3.0 * ratio(c.learned.steps)  # through the simulator and the reader
    run = _common_run if protocol == "common" else _ideal_run
    todo.append((key, cost, lambda: run(grid, name, n, layout, seed)))

  # The learned encoders first (each trains the common reader it needs),
  # count by count, all seeds of a count together: the encoder's compiled
  # step serves them all and is then let go (it is the largest thing held).
  if "learned" in c.representations:
    for n in c.num_phosphenes:
      for i, seed in enumerate(c.seeds):
        key = f"encoder/L{first}/{n}/s{seed}"
        if key not in grid.runs:
          cost = 3.0 * ratio(c.learned.steps)  # through the simulator and the reader
          if seed in readers_pending:
            cost += ratio(c.common.steps)
            readers_pending.discard(seed)
          encoders_seen.add((n, first, seed))
          todo.append((key, cost, functools.partial(
              _encoder_task, grid, n, first, seed, last=i == len(c.seeds) - 1)))
  # Then count by count: a partial run has every representation at the
  # first counts.
  for n in c.num_phosphenes:
    for name in c.representations:
      for seed in c.seeds:
        add("common", name, n, first, seed)
        add("ideal", name, n, first, seed)
  for layout in others:
    for n in c.num_phosphenes:
      for name in grid.drawn + [r for r in c.representations if reps.get(r).kind == "image"]:
        for seed in c.seeds:
          add("common", name, n, layout, seed)
        for seed in c.second_layout_ideal_seeds:
          add("ideal", name, n, layout, seed)
  return todo


def _encoder_task(grid: protocols.Grid, n: int, layout: int, seed: int, *,
                  last: bool) -> dict[str, Any]:
  """Trains (or loads) one learned encoder and makes its images."""
  made = protocols.images(grid, "learned", n, layout, seed)
  if last:
    learned_lib.release_compiled()
  return {"budget": made["budget"]}


def release_memory() -> None:
  """Hands freed heap back to the system after a run.

  Every run loads and frees arrays of tens of MB (masks, images); glibc
  keeps the freed pages in its arenas, and the resident size of a long grid
  crept up by GBs without it.
  """
  try:
    ctypes.CDLL("libc.so.6").malloc_trim(0)
  except (OSError, AttributeError):  # not glibc: nothing to trim
    pass


def progress_bar(fraction: float, width: int = 20) -> str:
  """'####----' of `width` characters, filled to `fraction`."""
  filled = int(round(width * min(max(fraction, 0.0), 1.0)))
  return "#" * filled + "-" * (width - filled)


def run_benchmark(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
                  joint_workdir: str | None = None, triplet_workdir: str | None = None
                  ) -> dict[str, Any]:
  """Runs (or resumes) every reader of the grid; writes `workdir/results.json`.

  Args:
    config: `benchmark_config()`.
    workdir: output folder (created); a re-run with the same config skips
      the runs already in its runs.json.
    joint_workdir, triplet_workdir: trained pose models (`launch.demo`'s
      `joint` and `triplet` folders) for the predicted-pose rows; None: only
      true-pose rows.

  Returns:
    the results (`assemble.assemble`): {'config', 'units', 'chance', 'cells':
    [cell], 'comparisons', 'conditions', 'predicted_by', 'provenance':
    this run's block (`provenance.provenance`: the config, the pose models'
    workdirs and steps, the figures), 'provenance_earlier': the blocks of
    the runs it resumed}.

  Raises:
    ValueError: for an unknown representation, or a workdir whose results
      were made with another config (readers, data, simulator or grid).
  """
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  for name in config.representations:
    reps.get(name)
  results = outputs.read_results(workdir)
  fingerprint = _fingerprint(config)
  predicted_by = [joint_workdir, triplet_workdir] if joint_workdir else None
  if results and (results.get("config") != fingerprint
                  or results.get("predicted_by") != predicted_by):
    raise ValueError(f"{workdir / outputs.RESULTS_FILE} holds results of another config "
                     "or other pose models; use a new --workdir (or delete it)")
  results.update(config=fingerprint, predicted_by=predicted_by)
  start, cpu_start = time.perf_counter(), time.process_time()
  logging.info("[readability] data: %d train / %d validation figures%s", config.num_train,
               config.num_validation, ", predicted poses" if joint_workdir else "")
  data = data_lib.load_data(config, workdir, joint_workdir=joint_workdir,
                            triplet_workdir=triplet_workdir)
  results["chance"] = cells_lib.chance(data)
  _record_provenance(results, config, data, joint_workdir=joint_workdir,
                     triplet_workdir=triplet_workdir)
  grid = protocols.Grid(config, data, workdir, results, outputs.read_runs(workdir))
  todo = _plan(grid)
  total, done = sum(cost for _, cost, _ in todo), 0.0
  for i, (key, cost, run) in enumerate(todo):
    elapsed = time.perf_counter() - start
    eta = elapsed / done * (total - done) if done else float("nan")
    logging.info("[readability %s %d/%d] %s | elapsed %s | ETA %s",
                 progress_bar(done / max(total, 1e-9)), i + 1, len(todo), key,
                 metric_writer.format_duration(elapsed), metric_writer.format_duration(eta))
    t0 = time.perf_counter()
    record = run()
    # Wall seconds of the reader (and of what it made first: images, encoder).
    record["seconds"] = time.perf_counter() - t0
    if "true" in record:
      logging.info("  PCKh %.1f%% from the true pose", 100 * float(np.mean(record["true"])))
    grid.runs[key] = record
    outputs.write_runs(workdir, grid.runs)
    done += cost
    release_memory()
  for layout in config.layouts:  # summaries of every condition (cached images)
    for n in config.num_phosphenes:
      for name in config.representations:
        if reps.get(name).kind != "learned" or layout == config.layouts[0]:
          for seed in (config.seeds if reps.get(name).kind == "learned" else config.seeds[:1]):
            protocols.images(grid, name, n, layout, seed)
  for n in config.num_phosphenes:
    results.setdefault("median_budget", {})[str(n)] = protocols.median_budget(
        grid, n, config.layouts[0])
  assemble_lib.assemble(results, grid.runs, config)
  results["seconds_this_run"] = time.perf_counter() - start
  results["cpu_seconds_this_run"] = time.process_time() - cpu_start
  outputs.write_results(workdir, results)
  return results


def _record_provenance(results: dict[str, Any], config: ml_collections.ConfigDict, data, *,
                       joint_workdir: str | None, triplet_workdir: str | None) -> None:
  """This run's provenance block; a resumed run's earlier blocks are kept."""
  earlier = results.pop(provenance.KEY, None)
  if earlier:
    results.setdefault("provenance_earlier", []).append(earlier)
  steps = data["predicted_steps"]
  models = {}
  if joint_workdir:
    first = "combined" if "combined" in steps else "joint"
    models[first] = {"workdir": joint_workdir, "step": steps.get(first)}
  if triplet_workdir:
    models["triplet"] = {"workdir": triplet_workdir, "step": steps.get("triplet")}
  results[provenance.KEY] = provenance.provenance(config=config, models=models,
                                                  dataset=data_lib.dataset_info(config))


