"""The main job: synthetic data -> joint and triplet models -> PCKh -> phosphenes.

`run_demo(workdir)` builds the synthetic figures, trains a small joint model
and a small triplet model fed with the joint model's *predicted* heatmaps,
evaluates both (PCKh with flip test), renders joint and triplet phosphenes
for validation examples and writes `workdir/report.html` and
`workdir/summary.json` (each row with the workdir and step of its model,
and the run's `provenance` block; the configs beside, summary.config.json).
Every stage resumes: a second run reuses the dataset and continues training from the
checkpoints instead of starting again.
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

import ml_collections
import numpy as np
from absl import logging
from PIL import Image

from triplet_pose import data
from triplet_pose import evaluation
from triplet_pose import keypoints as kp
from triplet_pose import metric_writer
from triplet_pose.phosphenes import readability
from triplet_pose import prediction
from triplet_pose import provenance
from triplet_pose.readability import outputs as readability_outputs
from triplet_pose import report as report_lib
from triplet_pose import results as results_lib
from triplet_pose import train
from triplet_pose import viz

SIZES = ("full", "quick", "smoke")

# Seconds each stage of the full demo takes on 2 CPU cores, for the overall ETA.
_STAGES = (("data", "Building the synthetic dataset", 12.0),
           ("joint", "Training the joint model", 540.0),
           ("triplet", "Training the triplet model on predicted joints", 110.0),
           ("evaluate", "Evaluating both models (PCKh, flip test)", 30.0),
           ("panels", "Rendering poses and phosphenes", 9.0),
           ("report", "Writing the report", 1.0))


class StageProgress:
  """Logs '[label i/n] stage | elapsed | ETA' as a job moves through its stages.

  The ETA is `metric_writer.Progress`'s, counting the stages' weights (their
  measured seconds) as steps: the remaining weight at the pace of the last
  stage against its weight.

  Args:
    stages: (key, description, seconds) of every stage, in order.
    label: the job's name in the log lines.
  """

  def __init__(self, stages: tuple[tuple[str, str, float], ...], *, label: str = "demo"):
    self._stages = stages
    self._label = label
    self._start = time.perf_counter()
    self._done = 0.0
    self._progress = metric_writer.Progress(0, sum(w for *_, w in stages))

  def begin(self, key: str) -> None:
    index = [k for k, *_ in self._stages].index(key)
    eta = self._progress.update(self._done)["eta_sec"] if self._done else float("nan")
    logging.info("[%s %d/%d] %s | elapsed %s | ETA %s", self._label, index + 1,
                 len(self._stages), self._stages[index][1], metric_writer.format_duration(
                     time.perf_counter() - self._start), metric_writer.format_duration(eta))

  def end(self, key: str) -> None:
    self._done += dict((k, w) for k, _, w in self._stages)[key]


def run_demo(workdir: str | pathlib.Path, joint_config: ml_collections.ConfigDict,
             triplet_config: ml_collections.ConfigDict, *, size: str = "full",
             num_panels: int = 4) -> dict[str, Any]:
  """Runs the whole demo in `workdir` and returns its summary (also summary.json).

  Args:
    workdir: where data, checkpoints, evaluation and report.html go; the
      configs' data_dir and the triplet config's joint_workdir are set to
      places inside it.
    joint_config: the joint model's config (`configs/demo.py:joint`).
    triplet_config: the triplet model's (`configs/demo.py:triplet`).
    size: the name of the recipe, recorded in the summary: 'full' (~11 min on
      2 CPU cores), 'quick' (~2 min) or 'smoke' (checks the pipeline).
    num_panels: validation examples drawn in the report.
  """
  if size not in SIZES:
    raise ValueError(f"demo size must be one of {SIZES}, got {size!r}")
  workdir = pathlib.Path(workdir).absolute()
  workdir.mkdir(parents=True, exist_ok=True)
  for config in (joint_config, triplet_config):
    config.input.data_dir = str(workdir / "tensorflow_datasets")
  triplet_config.joint_workdir = str(workdir / "joint")
  progress = StageProgress(_STAGES)

  progress.begin("data")
  for split in ("train", "validation"):  # builds the dataset once, if needed
    data.create_iterator(joint_config.input, split=split, batch_size=1, seed=0,
                         shuffle=False, repeat=False)
  progress.end("data")

  progress.begin("joint")
  train.train_and_evaluate(joint_config, workdir / "joint")
  progress.end("joint")

  progress.begin("triplet")
  train.train_and_evaluate(triplet_config, workdir / "triplet")
  progress.end("triplet")

  progress.begin("evaluate")
  results = evaluation.evaluate_checkpoints(workdir / "triplet",
                                            joint_workdir=str(workdir / "joint"))
  paths = results_lib.write_results(results, workdir / "eval")
  table = results_lib.format_table(results)
  logging.info("\n%s", table)
  progress.end("evaluate")

  progress.begin("panels")
  panels, overlap = _panels(workdir, joint_config, num_panels)
  (workdir / "panels").mkdir(exist_ok=True)
  for i, picture in enumerate(panels):
    Image.fromarray(picture).save(workdir / "panels" / f"validation_{i}.png")
  Image.fromarray(overlap).save(workdir / "panels" / "readability.png")
  progress.end("panels")

  progress.begin("report")
  summary = _summary(results, size=size)
  summary[provenance.KEY] = provenance.provenance(
      config={"size": size, "num_panels": num_panels, "joint": joint_config,
              "triplet": triplet_config},
      models=results[provenance.KEY]["models"], dataset=results[provenance.KEY]["dataset"])
  provenance.write_json(workdir / "summary.json", summary)
  _write_report(workdir, results, table, paths["curve"], panels, overlap, summary)
  progress.end("report")
  logging.info("report: %s", workdir / "report.html")
  return summary


def _panels(workdir: pathlib.Path, config, count: int
            ) -> tuple[list[np.ndarray], np.ndarray]:
  """Pose + heatmap + phosphene panels of the first validation examples, and
  the readability comparison (plain / nearest limb in front / outline) of the
  predicted triplets of the first two."""
  predictor = prediction.Predictor(str(workdir / "joint"), str(workdir / "triplet"),
                                   batch_size=count)
  renderer = prediction.PhospheneRenderer()
  iterator = data.create_iterator(config.input, split=config.input.eval_split,
                                  batch_size=count, seed=0, shuffle=False, repeat=False)
  batch = next(iterator)
  out = predictor.predict_crops(batch["image"])
  panels = []
  for i in range(count):
    pred = prediction.Prediction.from_outputs(batch["image"][i], batch["crop_to_original"][i],
                                              out, i)
    panels.append(prediction.panel(pred, renderer, title=f"validation example {i}"))
  size = tuple(batch["image"].shape[1:3])
  style = renderer.styles[kp.CONTOUR.name].replace(overlap="nearest",
                                                   overlap_gap=renderer.line_width)
  rows = {}
  for i in range(min(2, count)):
    rows[f"example {i}"] = readability.compare_overlap_modes(
        renderer.sim, out["keypoints"][kp.CONTOUR.name][i], None, image_size=size,
        style=style, frames=renderer.frames_per_image)
  overlap = viz.figure_to_array(viz.overlap_figure(rows))
  return panels, overlap


def _summary(results: dict[str, Any], *, size: str) -> dict[str, Any]:
  settings = results["settings"]
  summary = {"size": size, "persons": results["persons"]}
  for name, row in settings.items():
    summary[name] = {"keypoints": row["keypoints"], "PCKh@0.5": row["groups"]["Mean"],
                     "PCKh@0.1": row["Mean@0.1"], "AUC": row["AUC"],
                     **{k: row[k] for k in ("workdir", "step", "joint_workdir", "joint_step")
                        if k in row}}
  return summary


def _write_report(workdir: pathlib.Path, results, table: str, curve_png,
                  panels: list[np.ndarray], overlap: np.ndarray,
                  summary: dict[str, Any]) -> None:
  page = report_lib.Report("triplet_pose demo")
  page.paragraph(
      "A small joint model (image -> 16 joint heatmaps) and a small triplet model "
      "(image + the joint model's predicted heatmaps -> 26 contour-point heatmaps), "
      f"trained on the synthetic figures and evaluated on {results['persons']} "
      "validation persons with the MPII protocol (PCKh, head-size normalised, flip test).")
  page.heading("PCKh@0.5 (%)")
  header = ["Setting", "Keypoints", "PCKh@0.5", "PCKh@0.1", "AUC", "Model workdir", "Step"]
  rows = [[results_lib.SETTING_LABELS[name], s["keypoints"], 100 * s["PCKh@0.5"],
           100 * s["PCKh@0.1"], 100 * s["AUC"], s["workdir"], s["step"]]
          for name, s in ((name, summary[name]) for name in results["settings"])]
  page.table(header, rows)
  page.preformatted(table)
  page.image(curve_png, "PCKh against the normalised distance threshold.")
  page.heading("Loss per stack")
  for name in ("joint", "triplet"):
    fig = viz.loss_per_stack_figure(workdir / name)
    page.image(viz.figure_to_array(fig), f"{name} model: training loss of every stack.")
  page.heading("Validation examples")
  for i, picture in enumerate(panels):
    page.image(picture, f"Validation example {i}: prediction, heatmaps and phosphenes.")
  page.heading("Readability of the triplet phosphenes")
  page.paragraph(
      "The thesis's open problem: in the plain triplet rendering, arms in front of "
      "the body blend into it. 'nearest' keeps only the outline of the limb in front "
      "where limbs overlap (with a dark gap one line wide around it); 'outline' draws "
      "outlines but no fill where filled limbs cross.")
  page.image(overlap, "Predicted triplets of two validation examples: activation masks "
             "and phosphenes for each overlap mode.")
  _readability_section(page, workdir)
  page.footer(provenance.format_lines(summary[provenance.KEY]))
  page.write(workdir / "report.html")


# Where the report looks for `launch.readability`'s outputs, beside the models.
READABILITY_DIR = "readability"


def _readability_section(page: report_lib.Report, workdir: pathlib.Path) -> None:
  """The computational observer's table and plot when `launch.readability` has
  run on this demo's models, else the command that makes them."""
  page.heading("Which representation can a user read?")
  folder = workdir / READABILITY_DIR
  table, plot, examples = (folder / readability_outputs.OUTPUT_FILES[k]
                            for k in ("table", "plot", "examples"))
  if not table.exists():
    page.paragraph(
        "An observer network trained on phosphene images alone measures how much of "
        "the pose each representation carries (joints, triplet, silhouette, learned "
        "stimulation, ...). Run it on this demo's models, then re-run the demo (it "
        "resumes) to see its table and plot here:")
    page.preformatted(
        f"python -m launch.readability --workdir={folder} "
        f"--joint_workdir={workdir / 'joint'} --triplet_workdir={workdir / 'triplet'}")
    return
  page.paragraph(f"From {folder} (launch.readability on this demo's models): observer "
                 "PCKh on phosphene images of the true and of the predicted pose.")
  page.preformatted(table.read_text())
  for path, caption in ((plot, "Observer PCKh against the number of phosphenes."),
                        (examples, "One validation person in every representation.")):
    if path.exists():
      page.image(path, caption)
