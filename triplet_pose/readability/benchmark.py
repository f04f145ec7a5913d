"""The readability benchmark: observer PCKh per (representation, phosphene count).

For every cell of the grid (`config.representations` x
`config.num_phosphenes`) a fresh observer is trained on the phosphene images
of the training figures' true poses and evaluated on held-out validation
figures, rendered from their true pose (what the representation can carry
at best) and, when trained pose models are given, from the models' predicted
pose (the real pipeline). Every cell uses the same observer, steps and
schedule, and the simulator of a phosphene count is the same for every
representation (dynaphos' default parameters, magnification layout, random
thresholds from a fixed seed).

Data: the synthetic figures (`data.py`: the demo dataset's validation
figures, unseen by its pose models). A re-run reuses what the workdir
keeps: `data.npz`, `predictions.npz`, `masks/`, `results.json` (written after
every cell: finished cells are skipped), `examples/*.npy` (one person).
"""

from __future__ import annotations

import json
import pathlib
import time
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from triplet_pose import metric_writer
from triplet_pose import metrics
from triplet_pose import phosphene_loss
from triplet_pose import phosphenes
from triplet_pose import storage
from triplet_pose import viz
from triplet_pose.readability import data as data_lib
from triplet_pose.readability import figures as figures_lib
from triplet_pose.readability import observer as observer_lib
from triplet_pose.readability import representations as reps

SOURCE_SIZE = data_lib.SOURCE_SIZE
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


def _summary(report: Mapping[str, Any]) -> dict[str, float]:
  return {**report["groups"], "Mean@0.1": report["Mean@0.1"], "AUC": report["AUC"]}


def _evaluate(joints, split) -> dict[str, float]:
  visible = np.ones(split["joints"].shape[:2], np.float32)
  return _summary(metrics.pckh_report(joints, split["joints"], visible, split["head_size"]))


def chance(data) -> dict[str, float]:
  """PCKh of always answering the training figures' mean pose."""
  mean = np.mean(data["train"]["joints"], axis=0)
  val = data["validation"]
  return _evaluate(np.broadcast_to(mean, val["joints"].shape), val)


def _predicted_split(representation, data):
  """The validation split with the models' keypoints, if they predict what it shows."""
  predicted = data.get("predicted") or {}
  if representation.uses_pose and all(k in predicted for k in representation.keypoint_sets):
    return {**data["validation"], **predicted}
  return None


def observer_inputs(representation: reps.Representation, data, *,
                    config: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  """Per split, what the cells of a representation start from (shared by every N).

  Drawn and image representations: activation masks at the simulator's
  resolution; `learned`: the keypoints (N, 42, 2), joints then contour.
  Splits: 'train', 'validation' and, when the models predict what the
  representation shows, 'predicted' (validation figures, predicted pose).
  """
  splits = {"train": data["train"], "validation": data["validation"]}
  predicted = _predicted_split(representation, data)
  if predicted is not None:
    splits["predicted"] = predicted
  if representation.kind == "learned":
    return {k: np.concatenate([v["joints"], v["contour"]], axis=1) for k, v in splits.items()}
  res = (config.simulator_resolution,) * 2
  return {k: reps.draw(representation, v, image_size=(SOURCE_SIZE,) * 2, output_size=res,
                       line_width=config.line_width) for k, v in splits.items()}


def cached_inputs(representation: reps.Representation, data, *,
                  config: ml_collections.ConfigDict, workdir: pathlib.Path
                  ) -> dict[str, np.ndarray]:
  """`observer_inputs`, masks kept in `workdir/masks/<name>.npz` as uint8.

  Drawing the masks of every figure costs about as much as training an
  observer; kept on disk, the grid can run phosphene count by phosphene
  count (a partial run has every representation) and resume cheaply. The
  1/255 steps are far below what the electrodes resolve.
  """
  if representation.kind == "learned":
    return observer_inputs(representation, data, config=config)
  meta = json.dumps([data.get("meta"), config.simulator_resolution, config.line_width])
  path = workdir / "masks" / f"{representation.name}.npz"
  path.parent.mkdir(parents=True, exist_ok=True)
  masks = data_lib.cached_npz(path, lambda: {
      k: np.round(v * 255).astype(np.uint8)
      for k, v in observer_inputs(representation, data, config=config).items()}, meta)
  return {k: v.astype(np.float32) / 255 for k, v in masks.items()}


def _front(representation, sim, config):
  """The observer's front end and its initial parameters (`learned`: the encoder)."""
  oc = config.observer
  if representation.kind != "learned":
    return observer_lib.identity_front, None
  encoder = observer_lib.Encoder(oc.encoder_features, sim)
  front = observer_lib.learned_front(encoder, config=oc, source_size=SOURCE_SIZE,
                                     frames=config.frames)
  maps = observer_lib.pose_heatmaps(jnp.zeros((1, 42, 2)), source_size=SOURCE_SIZE,
                                    size=oc.image_size, sigma=oc.encoder_sigma)
  return front, encoder.init(jax.random.PRNGKey(config.seed + 1), maps)["params"]


def run_cell(representation: reps.Representation, num_phosphenes: int, data, *,
             config: ml_collections.ConfigDict, inputs: Mapping[str, np.ndarray] | None = None,
             seed: int | None = None, log: Callable[[int, float], None] | None = None
             ) -> dict[str, Any]:
  """Trains and evaluates one observer (one cell of the table).

  Args:
    representation: what is shown.
    num_phosphenes: phosphenes of the simulator; 0 shows the observer the
      unrendered activation mask (no implant: the representation's ceiling).
    data: `data.load_data`'s result.
    config: `benchmark_config()`.
    inputs: `observer_inputs(representation, data)`, if already made.
    seed: the observer's seed (default `config.seed`); the simulator's is
      always `config.seed`.
    log: training progress, log(step, loss).

  Returns:
    {'ground_truth': PCKh summary, 'predicted': summary or None, 'ssim':
    mean SSIM of predicted- vs true-pose images or None, 'train_loss',
    'phosphenes', 'example': (S, S) image of validation person
    `config.example_index`, 'example_mask': its mask (or pose heatmaps)}.
  """
  learned = representation.kind == "learned"
  if learned and not num_phosphenes:
    raise ValueError("the learned representation needs the simulator (num_phosphenes > 0)")
  oc = config.observer
  if inputs is None:
    inputs = observer_inputs(representation, data, config=config)
  sim = None
  if num_phosphenes:
    options = phosphenes.Options(threshold_gradient="sigmoid" if learned else "none")
    sim = reps.build_simulator(num_phosphenes, seed=config.seed,
                               resolution=config.simulator_resolution, options=options)
  factor = config.simulator_resolution // oc.image_size
  if learned:
    x = dict(inputs)
    example_mask = np.asarray(observer_lib.pose_heatmaps(
        jnp.asarray(x["validation"][config.example_index][None]), source_size=SOURCE_SIZE,
        size=oc.image_size, sigma=oc.encoder_sigma))[0].max(-1)
  elif sim is None:  # the unrendered mask, pooled (the sanity check of the observer)
    x = {k: np.asarray(reps.pool(jnp.asarray(v), factor)) for k, v in inputs.items()}
    example_mask = inputs["validation"][config.example_index]
  else:
    x = {k: reps.phosphene_images(sim, v, frames=config.frames, factor=factor)
         for k, v in inputs.items()}
    example_mask = inputs["validation"][config.example_index]
  front, front_params = _front(representation, sim, config)
  trained = observer_lib.train(x["train"], data["train"]["joints"], config=oc,
                               seed=config.seed if seed is None else seed,
                               source_size=SOURCE_SIZE, front=front, front_params=front_params,
                               log=log)
  predict = lambda x: observer_lib.predict(trained, x, config=oc, source_size=SOURCE_SIZE,
                                           front=front)
  val = data["validation"]
  joints, seen_true = predict(x["validation"])
  result = {"ground_truth": _evaluate(joints, val), "predicted": None, "ssim": None,
            "train_loss": trained["loss"], "phosphenes": sim.num_phosphenes if sim else 0,
            "example": seen_true[config.example_index], "example_mask": example_mask}
  if "predicted" in x:
    joints, seen = predict(x["predicted"])
    result["predicted"] = _evaluate(joints, val)
    result["ssim"] = float(np.mean(phosphene_loss.ssim(jnp.asarray(seen),
                                                       jnp.asarray(seen_true))))
  elif not representation.uses_pose and data.get("predicted"):
    result["predicted"], result["ssim"] = result["ground_truth"], 1.0  # same images
  return result


def cell_key(name: str, num_phosphenes: int) -> str:
  return f"{name}/{num_phosphenes}"


def _fingerprint(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """What a finished cell depends on (the grid itself may grow between runs)."""
  keep = {k: v for k, v in config.to_dict().items()
          if k not in ("representations", "num_phosphenes", "example_index", "spread_cells")}
  return json.loads(json.dumps(keep, default=list))


def _write_json(path: pathlib.Path, value: Any) -> None:
  storage.write_text(path, json.dumps(value, indent=1, default=float))


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
    the results: {'config', 'chance', 'cells': {'<name>/<N>': cell}, 'predicted_by'}.

  Raises:
    ValueError: for an unknown representation, or a workdir whose results
      were made with another config (observer, data or simulator).
  """
  workdir = pathlib.Path(workdir)
  (workdir / "examples").mkdir(parents=True, exist_ok=True)
  chosen = [reps.get(name) for name in config.representations]
  path = workdir / "results.json"
  results = json.loads(path.read_text()) if path.exists() else {}
  fingerprint = _fingerprint(config)
  predicted_by = [joint_workdir, triplet_workdir] if joint_workdir else None
  if results and (results.get("config") != fingerprint
                  or results.get("predicted_by") != predicted_by):
    raise ValueError(f"{path} holds results of another config or other pose models; "
                     "use a new --workdir (or delete it)")
  results.update(config=fingerprint, predicted_by=predicted_by)
  results.setdefault("cells", {})
  start, cpu_start = time.perf_counter(), time.process_time()
  logging.info("[readability] data: %d train / %d validation figures%s", config.num_train,
               config.num_validation, ", predicted poses" if joint_workdir else "")
  data = data_lib.load_data(config, workdir, joint_workdir=joint_workdir,
                   triplet_workdir=triplet_workdir)
  results["chance"] = chance(data)
  # Phosphene count by phosphene count (in the config's order): a partial
  # run has every representation at the first counts.
  todo = [(r, n) for n in config.num_phosphenes for r in chosen
          if cell_key(r.name, n) not in results["cells"]]
  cost = lambda r: _LEARNED_COST if r.kind == "learned" else 1.0
  total, done, cells_start = sum(cost(r) for r, _ in todo), 0.0, time.perf_counter()
  for i, (rep, n) in enumerate(todo):
    elapsed = time.perf_counter() - cells_start
    eta = elapsed / done * (total - done) if done else float("nan")
    logging.info("[readability %d/%d] %s, %d phosphenes | elapsed %s | ETA %s", i + 1,
                 len(todo), rep.name, n, metric_writer.format_duration(elapsed),
                 metric_writer.format_duration(eta))
    t0, cpu0 = time.perf_counter(), time.process_time()
    inputs = cached_inputs(rep, data, config=config, workdir=workdir)
    cell = run_cell(rep, n, data, config=config, inputs=inputs, log=lambda step, loss: logging.info(
        "  observer step %d: loss %.4f", step, loss))
    np.save(workdir / "examples" / f"{rep.name}_{n}.npy", cell.pop("example"))
    np.save(workdir / "examples" / f"{rep.name}_mask.npy", cell.pop("example_mask"))
    # CPU seconds (all threads) too: wall time on a shared machine says little.
    cell["seconds"], cell["cpu_seconds"] = time.perf_counter() - t0, time.process_time() - cpu0
    logging.info("  PCKh %.1f%% from the true pose%s", 100 * cell["ground_truth"]["Mean"],
                 f", {100 * cell['predicted']['Mean']:.1f}% from the predicted one"
                 if cell["predicted"] else "")
    results["cells"][cell_key(rep.name, n)] = {"representation": rep.name,
                                               "num_phosphenes": n, **cell}
    _write_json(path, results)
    done += cost(rep)
  _measure_spread(results, data, config, path)
  results["seconds_this_run"] = time.perf_counter() - start
  results["cpu_seconds_this_run"] = time.process_time() - cpu_start
  _write_json(path, results)
  return results


def _measure_spread(results, data, config, path) -> None:
  """Trains the `config.spread_cells` again with another observer seed."""
  spread = results.setdefault("spread", {})
  for key in config.spread_cells:
    if key in spread or key not in results["cells"]:
      continue
    name, n = key.split("/")
    logging.info("[readability] run-to-run spread: %s, observer seed %d", key, config.seed + 1)
    cell = run_cell(reps.get(name), int(n), data, config=config, seed=config.seed + 1)
    means = [results["cells"][key]["ground_truth"]["Mean"], cell["ground_truth"]["Mean"]]
    spread[key] = {"seeds": [config.seed, config.seed + 1], "Mean": means,
                   "difference": abs(means[0] - means[1])}
    _write_json(path, results)


def format_table(results: Mapping[str, Any], *, metric: str = "Mean") -> str:
  """The representation x phosphenes table of one metric, in percent.

  Blocks: from the true pose, from the predicted pose (when measured), and
  the SSIM of predicted- vs true-pose phosphene images.
  """
  cells = results["cells"]
  names = list(dict.fromkeys(c["representation"] for c in cells.values()))
  counts = sorted({c["num_phosphenes"] for c in cells.values()})
  width = max([len(n) for n in names] + [16])
  head = f"{'':<{width}}" + "".join(f"{f'N={n}':>8}" for n in counts)

  def block(title, value):
    lines = [title, head]
    for name in names:
      row = [value(cells.get(cell_key(name, n))) for n in counts]
      lines.append(f"{name:<{width}}" + "".join(f"{v:>8}" for v in row))
    return lines

  pct = lambda key: lambda c: ("-" if not c or not c[key] else f"{100 * c[key][metric]:.1f}")
  lines = [f"Observer PCKh ({metric}, %) on {_persons(results)} validation figures; "
           f"chance (the mean pose) {100 * results['chance'][metric]:.1f}", ""]
  lines += block("From the true pose", pct("ground_truth"))
  if any(c["predicted"] for c in cells.values()):
    lines += ["", *block("From the predicted pose (joint + triplet models)", pct("predicted")),
              "", *block("SSIM, predicted- vs true-pose phosphene images",
                         lambda c: "-" if not c or c["ssim"] is None else f"{c['ssim']:.3f}")]
  cpu = sum(c.get("cpu_seconds", 0.0) for c in cells.values())
  wall = sum(c.get("seconds", 0.0) for c in cells.values())
  lines += ["", f"Cells: {metric_writer.format_duration(wall)} wall"
            + (f", {metric_writer.format_duration(cpu)} of CPU time (all threads)" if cpu else "")]
  for key, value in results.get("spread", {}).items():
    lines += ["", f"Run-to-run spread: {key} with observer seeds {value['seeds']}: "
              + " vs ".join(f"{100 * m:.1f}" for m in value["Mean"])]
  return "\n".join(lines)


def _persons(results) -> str:
  return str(results["config"].get("num_validation", "?"))


# The files `write_outputs` writes into the workdir (the demo's report reads them).
OUTPUT_FILES = {"table": "table.txt", "plot": "pckh_vs_phosphenes.png",
                "examples": "examples.png"}


def write_outputs(results: Mapping[str, Any], workdir: str | pathlib.Path
                  ) -> dict[str, pathlib.Path]:
  """Writes table.txt (Mean, then AUC), the PCKh-vs-N plot and the example grid."""
  workdir = pathlib.Path(workdir)
  paths = {key: workdir / name for key, name in OUTPUT_FILES.items()}
  storage.write_text(paths["table"], format_table(results) + "\n\n"
                     + format_table(results, metric="AUC") + "\n")
  viz.save_figure(figures_lib.pckh_plot(results), paths["plot"])
  viz.save_figure(figures_lib.example_grid(results, workdir / "examples"), paths["examples"])
  return paths
