"""The several-people demo: synthetic scenes -> associative embedding -> AP -> phosphenes.

`run_scenes_demo(workdir, config)` builds the `synthetic_scenes` dataset
(in `workdir/tensorflow_datasets`, beside the single-person demo's data),
trains `configs/scenes.py` in `workdir/scenes`, picks the grouping's
detection threshold, fewest joints of a person and tag threshold on
training scenes, evaluates the MPII multi-person AP on the held-out
scenes (all images, per occlusion bin, per crowd bin, the grouping
ceiling, the person count), draws the scene panel (image, grouped persons
in distinct colours, each representation's phosphenes) and writes
`workdir/scenes_report.html` and `workdir/scenes_summary.json` (the AP,
the model's workdir and step, and the run's `provenance` block; the
configs beside, scenes_summary.config.json).
Every stage resumes: a second run reuses the dataset and the checkpoints.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import ml_collections
from absl import logging

from triplet_pose import data
from triplet_pose import demo
from triplet_pose import keypoints as kp
from triplet_pose import provenance
from triplet_pose import report as report_lib
from triplet_pose import train
from triplet_pose import viz
from triplet_pose import workdir as workdir_lib
from triplet_pose.data import scene_features as sf
from triplet_pose.prediction import scenes
from triplet_pose.viz import scenes as scene_viz

MODEL_DIR = "scenes"
REPORT = "scenes_report.html"
SUMMARY = "scenes_summary.json"
PANEL = "scenes_panel.png"

# Seconds each stage takes on 2 idle CPU cores (the quick recipe, 200 held-out
# scenes), for the overall ETA; training's scale with the steps.
_STAGES = (("data", "Building the synthetic scenes", 20.0),
           ("train", "Training the scenes model (associative embedding)", 0.0),
           ("grouping", "Tuning the grouping on training scenes", 5.0),
           ("evaluate", "Evaluating the multi-person AP (occlusion and crowd bins)", 4.0),
           ("panels", "Rendering the scene panel and phosphenes", 6.0),
           ("report", "Writing the report", 1.0))
_SECONDS_PER_STEP = 0.35


def _stages(config: ml_collections.ConfigDict) -> tuple[tuple[str, str, float], ...]:
  train_seconds = _SECONDS_PER_STEP * config.num_train_steps
  return tuple((k, text, train_seconds if k == "train" else w) for k, text, w in _STAGES)


# Batches of training scenes `tune_grouping` scores each setting on.
_TUNE_BATCHES = 4


def run_scenes_demo(workdir: str | pathlib.Path, config: ml_collections.ConfigDict, *,
                    size: str = "full", num_panels: int = 3,
                    triplet_workdir: str | None = None, flip_test: bool = True
                    ) -> dict[str, Any]:
  """Runs the several-people demo in `workdir`; returns its summary (also on disk).

  Args:
    workdir: where data, the model (`workdir/scenes`), the panel and the
      report go; the config's data_dir is set to a place inside it.
    config: the model's config (`configs/scenes.py`, its variant matching `size`).
    size: the recipe's name, recorded in the summary: 'full', 'quick' or 'smoke'.
    num_panels: held-out scenes drawn in the panel.
    triplet_workdir: a trained triplet model (`configs/demo.py:triplet`):
      every grouped person's contour is then drawn and rendered too.
    flip_test: tune, evaluate and draw on maps averaged with the mirrored
      image's (`inference.predict_scene_maps`), as the single-person
      evaluation does.
  """
  if size not in demo.SIZES:
    raise ValueError(f"demo size must be one of {demo.SIZES}, got {size!r}")
  if num_panels < 1:
    raise ValueError(f"num_panels must be at least 1, got {num_panels}")
  # Checked first: a wrong triplet workdir fails before the training, not after.
  triplet_step = (workdir_lib.load_model(triplet_workdir, expect=kp.CONTOUR.name).step
                  if triplet_workdir else None)
  workdir = pathlib.Path(workdir).absolute()
  workdir.mkdir(parents=True, exist_ok=True)
  model_dir = workdir / MODEL_DIR
  config.input.data_dir = str(workdir / "tensorflow_datasets")
  progress = demo.StageProgress(_stages(config), label="scenes demo")

  progress.begin("data")
  for split in ("train", config.input.eval_split):  # builds the dataset once, if needed
    data.create_iterator(config.input, split=split, batch_size=1, seed=0, shuffle=False,
                         repeat=False)
  progress.end("data")

  progress.begin("train")
  train.train_and_evaluate(config, model_dir)
  progress.end("train")

  progress.begin("grouping")
  options, tried = scenes.tune_grouping(str(model_dir), num_batches=_TUNE_BATCHES,
                                        batch_size=config.input.batch_size,
                                        flip_test=flip_test, record=True)
  logging.info("grouping on training scenes: %s", ", ".join(
      f"{k} {v}" for k, v in scenes.tuned_settings(options).items()))
  progress.end("grouping")

  progress.begin("evaluate")
  ap = scenes.evaluate_workdir(str(model_dir), batch_size=config.input.eval_batch_size,
                               options=options, flip_test=flip_test)
  logging.info("multi-person AP@0.5 (%%):\n%s", "\n".join(
      f"  {name:<48} {value:5.1f}" for name, value in _bin_rows(ap)))
  progress.end("evaluate")

  progress.begin("panels")
  rows = scenes.scene_rows(str(model_dir), num_images=num_panels,
                           triplet_workdir=triplet_workdir, options=options,
                           flip_test=flip_test)
  panel = viz.save_figure(scene_viz.scene_panel(rows), workdir / PANEL)
  progress.end("panels")

  progress.begin("report")
  models = {"scenes": {"workdir": str(model_dir), "step": ap["step"]}}
  if triplet_workdir:
    models["triplet"] = {"workdir": triplet_workdir, "step": triplet_step}
  summary = {"size": size, "model": models["scenes"], "flip_test": flip_test,
             "grouping": {**scenes.tuned_settings(options), "tuned_on": "train",
                          "scales": list(options.scales), "map_scale": options.map_scale,
                          "tried": tried},
             "ap": {k: v for k, v in ap.items() if k not in ("step", "grouping", provenance.KEY)}}
  summary[provenance.KEY] = provenance.provenance(
      config={"size": size, "num_panels": num_panels, "flip_test": flip_test, "scenes": config,
              "grouping": dataclasses.asdict(options)},
      models=models, dataset=provenance.dataset_info(config.input, ap["split"]))
  provenance.write_json(workdir / SUMMARY, summary)
  _write_report(workdir, summary, panel)
  progress.end("report")
  logging.info("report: %s", workdir / REPORT)
  return summary


def _bin_rows(ap: dict[str, Any]) -> list[list[object]]:
  """(subset, mAP %) rows: all scenes, occlusion bins, crowd bins, the ceiling."""
  rows = [["all held-out scenes", ap["map"]]]
  rows += [[f"persons {name} hidden" if name != "unoccluded" else "persons unoccluded",
            ap["by_occlusion"][name]] for name in sf.OCCLUSION_BINS
           if name in ap["by_occlusion"]]
  rows += [[f"crowd index {name}", ap["by_crowd"][name]] for name in sf.CROWD_BINS
           if name in ap["by_crowd"]]
  if "ceiling_map" in ap:
    rows.append(["grouping ceiling (true joints, predicted tags)", ap["ceiling_map"]])
  return [[name, float(v)] for name, v in rows]


def _write_report(workdir: pathlib.Path, summary: dict[str, Any],
                  panel: pathlib.Path) -> None:
  ap, model, grouping = summary["ap"], summary["model"], summary["grouping"]
  page = report_lib.Report("triplet_pose demo: several people")
  page.paragraph(
      "A bottom-up model (associative embedding on the stacked hourglass: joint "
      "heatmaps and a tag per joint, persons grouped by their tags) trained on "
      "synthetic scenes of 1-4 figures that hide each other and stand behind "
      f"occluders, evaluated on {ap['images']} held-out scenes ({ap['persons']} persons) "
      "with MPII's multi-person protocol (AP per joint at PCKh 0.5, persons matched "
      "greedily by score)"
      + (", with the flip test (heatmaps averaged with the mirrored image's, the "
         "tags of both side by side)." if summary.get("flip_test") else "."))
  page.heading("Multi-person AP@0.5 (%)")
  page.table(["Images", "Persons", "mAP", *ap["groups"]],
             [[ap["images"], ap["persons"], ap["map"], *ap["groups"].values()]])
  page.table(["Subset", "mAP"], _bin_rows(ap))
  page.paragraph(
      f"Person count right in {100 * ap['count_accuracy']:.1f}% of images (too few "
      f"persons in {100 * ap['count_too_few']:.1f}%, too many in "
      f"{100 * ap['count_too_many']:.1f}%). Occlusion "
      "bins: the share of a person's annotated joints hidden (unoccluded 0, partly "
      "<= 1/3, heavily more); crowd bins: CrowdPose's crowd index of the image "
      "(easy <= 0.1 < medium <= 0.8 < hard). The grouping ceiling groups the true "
      "joints by the predicted tags.")
  scales = grouping["scales"]
  page.table(["Model workdir", "Step", "Input scales", "Detection threshold",
              "Fewest joints", "Tag threshold"],
             [[model["workdir"], model["step"],
               ", ".join(f"{s:g}" for s in scales),
               grouping["detection_threshold"], grouping["min_joints"],
               grouping["tag_threshold"]]])
  page.paragraph("The detection threshold, fewest joints of a person and tag threshold "
                 "were picked on training scenes (the held-out scenes stay unseen)."
                 + (" The maps of every input scale are combined (Newell et al.'s "
                    f"multi-scale test) at {grouping['map_scale']:g} times the plain maps' "
                    "side." if len(scales) > 1 else ""))
  page.heading("Loss per stack")
  page.image(viz.figure_to_array(viz.loss_per_stack_figure(model["workdir"])),
             "Scenes model: training loss of every stack.")
  page.heading("Held-out scenes")
  page.image(panel, "Each scene with its grouped persons in distinct colours, then the "
             "phosphenes of the whole scene: skeletons plain, with a dark gap around "
             "nearer bodies, and dimmed by depth (nearer = larger joint box)"
             + ("; and every person's contour." if "triplet" in
                summary[provenance.KEY].get("models", {}) else "."))
  page.footer(provenance.format_lines(summary[provenance.KEY]))
  page.write(workdir / REPORT)
