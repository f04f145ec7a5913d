"""The readability benchmark's scenes: can an observer read several people?

For every drawn representation that can show a scene (`scenes_images.py`;
`learned` cannot) and every phosphene count, the phosphene images of the
scenes' true persons (depth order from the scenes) train a fresh
associative-embedding reader per seed (`scenes_reader.py`; the `ideal`
protocol), which must find every person's joints in held-out scenes. Each
cell is scored by the multi-person mAP with a bootstrap CI, the
person-count accuracy and the mAP per occlusion bin
(`scenes_assemble.py`). The `common` protocol (one frozen reader of every
representation) is not run for scenes.

* `scenes_config`: the grid, scenes, reader and statistics (full, quick, smoke).
* `run_scenes`: runs or resumes the grid; writes `scenes_results.json`.

A re-run reuses what the workdir keeps: `scenes/data.npz`, `scenes/masks/`,
`scenes/images/`, `scenes/readers/` and `scenes_runs.json` (every finished
reader's persons of every test scene: finished runs are skipped).
"""

from __future__ import annotations

import json
import pathlib
import time
from typing import Any, Callable

import ml_collections
import numpy as np
from absl import logging

from triplet_pose import metric_writer
from triplet_pose import provenance
from triplet_pose.readability import benchmark
from triplet_pose.readability import outputs
from triplet_pose.readability import protocols
from triplet_pose.readability import representations as reps
from triplet_pose.readability import scenes_assemble as assemble
from triplet_pose.readability import scenes_data
from triplet_pose.readability import scenes_images
from triplet_pose.readability import scenes_reader

SIZES = benchmark.SIZES
SOURCE_SIZE = scenes_data.SOURCE_SIZE


def scenes_config(size: str = "full") -> ml_collections.ConfigDict:
  """The scenes grid.

  Args:
    size: 'full' (every drawn representation x 4 phosphene counts x 3
      seeds), 'quick' (joints, triplet, silhouette x 2 counts x 3 seeds,
      small readers: minutes) or 'smoke' (seconds: tests).
  """
  if size not in SIZES:
    raise ValueError(f"size must be one of {SIZES}, got {size!r}")
  c = ml_collections.ConfigDict()
  c.scenes = True  # what `launch.readability` tells the scenes grid by
  c.representations = tuple(scenes_images.scene_representations())
  c.num_phosphenes = (1000, 300, 3000, 100)  # run in this order; tables sort them.
  c.num_train = 1500
  c.num_validation = 200  # the scenes dataset's held-out scenes (the demo's)
  c.data_seed = 0
  c.min_persons, c.max_persons = 1, 4
  c.simulator_resolution = 128  # as the single-person grid
  c.line_width = 2.5
  c.frames = 10
  c.seeds = (0, 1, 2)
  c.layout = 0  # the single-person grid's first layout
  c.bootstrap = 1000
  c.observer = scenes_reader.reader_config()
  if size == "quick":
    c.representations = ("joints", "triplet", "silhouette")
    c.num_phosphenes = (1000, 100)
    c.num_train, c.num_validation = 600, 100
    # 500 steps: 150-step readers found almost nobody (mAP < 1 in every
    # cell); 500 is where they begin to.
    c.observer.steps = 500
    c.observer.tune_scenes = 32
    c.bootstrap = 200
  elif size == "smoke":
    c.representations = ("joints", "triplet", "silhouette")
    c.num_phosphenes = (100,)
    c.num_train, c.num_validation = 8, 6
    c.simulator_resolution = 64
    c.line_width = 1.5
    c.frames = 3
    c.seeds = (0, 1)
    c.observer.image_size = 32
    c.observer.hourglass_depth = 1
    c.observer.num_features = 16
    c.observer.stem_features = 8
    c.observer.steps = 2
    c.observer.batch_size = 4
    c.observer.eval_batch_size = 8
    c.observer.optimizer.warmup_steps = 0
    c.observer.detection_thresholds = (0.1, 0.3)
    c.observer.min_joints = (4,)
    c.observer.tune_scenes = 4
    c.bootstrap = 20
  return c


def _fingerprint(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return json.loads(json.dumps(config.to_dict(), default=list))


def reader_path(workdir: pathlib.Path, name: str, n: int, layout: int, seed: int
                ) -> pathlib.Path:
  return workdir / "scenes" / "readers" / f"ideal_L{layout}_{name}_{n}_s{seed}.msgpack"


class _Conditions:
  """The images of the condition being read (one held: they are cached on disk)."""

  def __init__(self, config, data, workdir):
    self.config, self.data, self.workdir = config, data, workdir
    self.key, self.value = None, None

  def __call__(self, name: str, n: int) -> dict[str, Any]:
    if self.key != (name, n):
      self.key, self.value = None, None  # let the last condition go first
      self.value = scenes_images.condition_images(
          reps.get(name), n, self.data, config=self.config, layout=self.config.layout,
          workdir=self.workdir)
      self.key = (name, n)
    return self.value


def _read(config, data, images: dict[str, Any], reader: dict[str, Any]) -> dict[str, Any]:
  """A reader's persons of the test scenes, grouped as tuned on training scenes."""
  oc = config.observer
  tune = min(oc.tune_scenes, config.num_train)
  train = {k: v[:tune] for k, v in data["train"].items()}
  chosen = scenes_reader.tune_grouping(
      scenes_reader.maps(reader, images["train"][:tune], config=oc),
      scenes_data.scoring_batch(train), config=oc, source_size=SOURCE_SIZE)
  found = scenes_reader.persons(
      scenes_reader.maps(reader, images["validation"], config=oc), source_size=SOURCE_SIZE,
      grouping_options=scenes_reader.options(oc, detection_threshold=chosen["detection_threshold"],
                                             min_joints=chosen["min_joints"]))
  return {"persons": assemble.to_json(found), "grouping": chosen, "loss": reader["loss"]}


def _plan(config, data, workdir, runs) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
  """The runs still to do, condition by condition (every seed of one together)."""
  conditions = _Conditions(config, data, workdir)
  todo = []
  for n in config.num_phosphenes:
    for name in config.representations:
      for seed in config.seeds:
        key = assemble.run_key(name, n, config.layout, seed)
        if key in runs:
          continue

        def run(name=name, n=n, seed=seed):
          images = conditions(name, n)
          reader = protocols.load_or_train(
              reader_path(workdir, name, n, config.layout, seed),
              lambda: scenes_reader.train(
                  images["train"], data["train"], config=config.observer, seed=seed,
                  source_size=SOURCE_SIZE,
                  log=lambda step, loss: logging.info("  reader step %d: loss %.4f", step,
                                                      loss)))
          return _read(config, data, images, reader)
        todo.append((key, run))
  return todo


def run_scenes(config: ml_collections.ConfigDict, workdir: str | pathlib.Path
               ) -> dict[str, Any]:
  """Runs (or resumes) every reader of the scenes grid; writes `workdir/scenes_results.json`.

  Args:
    config: `scenes_config()`.
    workdir: output folder (created); may hold the single-person grid too.

  Returns:
    {'config', 'cells': [{'representation', 'num_phosphenes', 'protocol',
    'map', 'count_accuracy', 'by_occlusion', 'by_crowd', 'budget', ...}],
    'ceiling', 'provenance', 'provenance_earlier', 'seconds_this_run'}.

  Raises:
    ValueError: a representation scenes cannot show, or a workdir whose
      scenes were made with another config.
  """
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  scenes_images.check(config.representations)
  results = outputs.read_results(workdir, outputs.SCENES_RESULTS_FILE)
  fingerprint = _fingerprint(config)
  if results and results.get("config") != fingerprint:
    raise ValueError(f"{workdir / outputs.SCENES_RESULTS_FILE} holds scenes of another "
                     "config; use a new --workdir (or delete it)")
  start, cpu_start = time.perf_counter(), time.process_time()
  logging.info("[readability scenes] data: %d train / %d test scenes", config.num_train,
               config.num_validation)
  data = scenes_data.load_scenes(config, workdir)
  earlier = results.pop(provenance.KEY, None)
  if earlier:
    results.setdefault("provenance_earlier", []).append(earlier)
  results.update(config=fingerprint, **{provenance.KEY: provenance.provenance(
      config=config, dataset=scenes_data.dataset_info(config))})
  runs = outputs.read_runs(workdir, outputs.SCENES_RUNS_FILE)
  todo = _plan(config, data, workdir, runs)
  for i, (key, run) in enumerate(todo):
    elapsed = time.perf_counter() - start
    eta = elapsed / i * (len(todo) - i) if i else float("nan")
    logging.info("[readability scenes %s %d/%d] %s | elapsed %s | ETA %s",
                 benchmark.progress_bar(i / max(len(todo), 1)), i + 1, len(todo), key,
                 metric_writer.format_duration(elapsed), metric_writer.format_duration(eta))
    t0 = time.perf_counter()
    record = run()
    record["seconds"] = time.perf_counter() - t0
    runs[key] = record
    outputs.write_runs(workdir, runs, outputs.SCENES_RUNS_FILE)
    benchmark.release_memory()
  results["cells"] = _cells(config, data, workdir, runs)
  results["ceiling"] = assemble.ceiling(data["validation"], config=config,
                                        source_size=SOURCE_SIZE)
  results["seconds_this_run"] = time.perf_counter() - start
  results["cpu_seconds_this_run"] = time.process_time() - cpu_start
  outputs.write_results(workdir, results, outputs.SCENES_RESULTS_FILE)
  return results


def _cells(config, data, workdir, runs) -> list[dict[str, Any]]:
  cells = []
  for n in config.num_phosphenes:
    for name in config.representations:
      chosen = [runs[assemble.run_key(name, n, config.layout, s)] for s in config.seeds]
      budget = scenes_images.condition_images(reps.get(name), n, data, config=config,
                                              layout=config.layout, workdir=workdir)["budget"]
      cells.append({"representation": name, "num_phosphenes": n, "protocol": "ideal",
                    "layout": config.layout, "budget": budget,
                    **assemble.cell(chosen, data["validation"], samples=config.bootstrap)})
      logging.info("[readability scenes] %s N=%d: mAP %.1f [%.1f, %.1f], count %.2f", name, n,
                   cells[-1]["map"]["mean"], *cells[-1]["map"]["ci95"],
                   cells[-1]["count_accuracy"]["mean"])
  return cells

