"""The readability benchmark: observer PCKh per (representation, phosphene count).

For every cell of the grid (`config.representations` x
`config.num_phosphenes`) `cells.run_cell` trains a fresh observer on the
phosphene images of the training figures' true poses and evaluates it on
held-out validation figures, from their true pose and, when trained pose
models are given, from the models' predicted pose. Every cell uses the same
observer, steps and schedule.

* `benchmark_config`: the grid, data and observer of a run (full, quick, smoke).
* `run_benchmark`: runs or resumes the grid, then the run-to-run spread.

Data: the synthetic figures (`data.py`: the demo dataset's validation
figures, unseen by its pose models). A re-run reuses what the workdir
keeps: `data.npz`, `predictions.npz`, `masks/`, `results.json` (written after
every cell: finished cells are skipped), `examples/*.npy` (one person);
`outputs.py` writes the tables and figures.
"""

from __future__ import annotations

import json
import pathlib
import time
from typing import Any

import ml_collections
from absl import logging

from triplet_pose import metric_writer
from triplet_pose import provenance
from triplet_pose.readability import cells as cells_lib
from triplet_pose.readability import data as data_lib
from triplet_pose.readability import observer as observer_lib
from triplet_pose.readability import outputs
from triplet_pose.readability import representations as reps

SIZES = ("full", "quick", "smoke")
# Relative cost of a learned cell (it trains through the simulator).
_LEARNED_COST = 3.0


def benchmark_config(size: str = "full") -> ml_collections.ConfigDict:
  """The grid, data and observer of a benchmark run.

  Args:
    size: 'full' (the README's grid: 8 representations x 4 phosphene
      counts), 'quick' (10 cells, 150-step observers) or 'smoke' (3 cells,
      2 steps: tests). Their times are in the README.
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
  c.seed = 0  # simulator layout and thresholds (per phosphene count), observers.
  c.example_index = 0  # the validation person of the example grid.
  # Cells trained again with observer seed + 1: the run-to-run spread.
  c.spread_cells = ("silhouette/300",)
  c.observer = observer_lib.observer_config()
  if size == "quick":
    c.representations = ("image_edges", "joints", "triplet", "silhouette", "learned")
    c.num_phosphenes = (1000, 300)
    c.num_train, c.num_validation = 500, 100
    c.observer.steps = 150
    c.spread_cells = ()
  elif size == "smoke":
    c.representations = ("image_edges", "joints", "learned")
    c.num_phosphenes = (100,)
    c.num_train, c.num_validation = 16, 8
    c.simulator_resolution = 64
    c.line_width = 1.5
    c.frames = 3
    c.observer.steps = 2
    c.observer.batch_size = 4
    c.observer.eval_batch_size = 8
    # The smallest observer that compiles (compilation is most of its time).
    c.observer.image_size = 32
    c.observer.hourglass_depth = 1
    c.observer.num_features = 16
    c.observer.encoder_features = 4
    c.observer.optimizer.warmup_steps = 0
    c.spread_cells = ()
  return c


def _fingerprint(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """What a finished cell depends on (the grid itself may grow between runs)."""
  keep = {k: v for k, v in config.to_dict().items()
          if k not in ("representations", "num_phosphenes", "example_index", "spread_cells")}
  return json.loads(json.dumps(keep, default=list))


def run_benchmark(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
                  joint_workdir: str | None = None, triplet_workdir: str | None = None
                  ) -> dict[str, Any]:
  """Runs (or resumes) every cell of the grid; writes `workdir/results.json`.

  Args:
    config: `benchmark_config()`.
    workdir: output folder (created); a re-run with the same config skips
      the cells already in its results.json.
    joint_workdir, triplet_workdir: trained pose models (`launch.demo`'s
      `joint` and `triplet` folders) for the predicted-pose rows; None: only
      ground-truth rows.

  Returns:
    the results: {'config', 'chance', 'cells': {'<name>/<N>': cell}, 'predicted_by',
    'provenance': this run's block (`provenance.provenance`: the config, the
    pose models' workdirs and steps, the figures), 'provenance_earlier': the
    blocks of the runs it resumed}.

  Raises:
    ValueError: for an unknown representation, or a workdir whose results
      were made with another config (observer, data or simulator).
  """
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  chosen = [reps.get(name) for name in config.representations]
  results = outputs.read_results(workdir)
  fingerprint = _fingerprint(config)
  predicted_by = [joint_workdir, triplet_workdir] if joint_workdir else None
  if results and (results.get("config") != fingerprint
                  or results.get("predicted_by") != predicted_by):
    raise ValueError(f"{workdir / outputs.RESULTS_FILE} holds results of another config "
                     "or other pose models; use a new --workdir (or delete it)")
  results.update(config=fingerprint, predicted_by=predicted_by)
  results.setdefault("cells", {})
  start, cpu_start = time.perf_counter(), time.process_time()
  logging.info("[readability] data: %d train / %d validation figures%s", config.num_train,
               config.num_validation, ", predicted poses" if joint_workdir else "")
  data = data_lib.load_data(config, workdir, joint_workdir=joint_workdir,
                            triplet_workdir=triplet_workdir)
  results["chance"] = cells_lib.chance(data)
  _record_provenance(results, config, data, joint_workdir=joint_workdir,
                     triplet_workdir=triplet_workdir)
  # Phosphene count by phosphene count (in the config's order): a partial
  # run has every representation at the first counts.
  todo = [(r, n) for n in config.num_phosphenes for r in chosen
          if outputs.cell_key(r.name, n) not in results["cells"]]
  cost = lambda r: _LEARNED_COST if r.kind == "learned" else 1.0
  total, done, cells_start = sum(cost(r) for r, _ in todo), 0.0, time.perf_counter()
  for i, (rep, n) in enumerate(todo):
    elapsed = time.perf_counter() - cells_start
    eta = elapsed / done * (total - done) if done else float("nan")
    logging.info("[readability %d/%d] %s, %d phosphenes | elapsed %s | ETA %s", i + 1,
                 len(todo), rep.name, n, metric_writer.format_duration(elapsed),
                 metric_writer.format_duration(eta))
    t0, cpu0 = time.perf_counter(), time.process_time()
    inputs = cells_lib.cached_inputs(rep, data, config=config, workdir=workdir)
    cell = cells_lib.run_cell(rep, n, data, config=config, inputs=inputs,
                              log=lambda step, loss: logging.info(
                                  "  observer step %d: loss %.4f", step, loss))
    outputs.save_example(workdir, rep.name, n, image=cell.pop("example"),
                         mask=cell.pop("example_mask"))
    # CPU seconds (all threads) too: wall time on a shared machine says little.
    cell["seconds"], cell["cpu_seconds"] = time.perf_counter() - t0, time.process_time() - cpu0
    logging.info("  PCKh %.1f%% from the true pose%s", 100 * cell["ground_truth"]["Mean"],
                 f", {100 * cell['predicted']['Mean']:.1f}% from the predicted one"
                 if cell["predicted"] else "")
    results["cells"][outputs.cell_key(rep.name, n)] = {"representation": rep.name,
                                                       "num_phosphenes": n, **cell}
    outputs.write_results(workdir, results)
    done += cost(rep)
  _measure_spread(results, data, config, workdir)
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


def _measure_spread(results, data, config, workdir) -> None:
  """Trains the `config.spread_cells` again with another observer seed."""
  spread = results.setdefault("spread", {})
  for key in config.spread_cells:
    if key in spread or key not in results["cells"]:
      continue
    name, n = key.split("/")
    logging.info("[readability] run-to-run spread: %s, observer seed %d", key, config.seed + 1)
    cell = cells_lib.run_cell(reps.get(name), int(n), data, config=config, seed=config.seed + 1)
    means = [results["cells"][key]["ground_truth"]["Mean"], cell["ground_truth"]["Mean"]]
    spread[key] = {"seeds": [config.seed, config.seed + 1], "Mean": means,
                   "difference": abs(means[0] - means[1])}
    outputs.write_results(workdir, results)

