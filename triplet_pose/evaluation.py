"""Evaluation of trained checkpoints: PCKh, model size and speed, tables and files.

* `evaluate_checkpoints`: runs a split with flip-test inference
  (`triplet_pose.inference`) and computes PCKh in original image pixels
  (predictions mapped back with `crop_to_original`) for every setting the
  workdir allows, side by side: the joint model; the triplet model fed with
  the joint model's predicted joints (the realistic setting); the triplet
  model fed with ground-truth joints (the thesis setting); or the combined
  model's joints and contour points. Each setting also carries the parameters
  of the network(s) it runs and their inference time per image, so a
  combined model and the two-model pipeline can be compared on all three,
  and the phosphene-space error of its predictions
  (`phosphene_loss.phosphene_errors`: what the user would see of the
  predicted pose against the true one).
* `format_table` (paper layout), `write_results` (metrics.json, PCKh curve).
* `training_eval_summary`: PCKh scalars and a panel during training.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from triplet_pose import config as config_lib
from triplet_pose import data
from triplet_pose import inference
from triplet_pose import metrics
from triplet_pose import phosphene_loss
from triplet_pose import transforms
from triplet_pose import viz

JOINT = "joint_model"
TRIPLET_PREDICTED = "triplet_predicted_joints"
TRIPLET_GT = "triplet_ground_truth_joints"
COMBINED_JOINTS = "combined_joints"
COMBINED_CONTOUR = "combined_contour"
SETTING_LABELS = {
    JOINT: "joint model",
    TRIPLET_PREDICTED: "triplet, predicted joints",
    TRIPLET_GT: "triplet, ground-truth joints",
    COMBINED_JOINTS: "combined model",
    COMBINED_CONTOUR: "combined model",
}
# Column order and short names of the paper tables (Newell et al. 2016).
JOINT_COLUMNS = (("Head", "Head"), ("Shoulder", "Sho."), ("Elbow", "Elb."),
                 ("Wrist", "Wri."), ("Hip", "Hip"), ("Knee", "Knee"), ("Ankle", "Ank."))
CONTOUR_COLUMNS = (("Neck", "Neck"),) + JOINT_COLUMNS[1:]


def crop_scale(crop_to_original: np.ndarray) -> np.ndarray:
  """Original pixels per crop pixel (B,) of (B, 2, 3) similarity affines."""
  return np.sqrt(np.abs(np.linalg.det(np.asarray(crop_to_original, np.float64)[..., :2])))


def to_original(points, crop_to_original) -> np.ndarray:
  """(B, K, 2) crop pixels -> original image pixels."""
  return transforms.apply_affine(np.asarray(crop_to_original, np.float64),
                                 np.asarray(points, np.float64))


@dataclasses.dataclass(frozen=True)
class Setting:
  """One row of the results: what is predicted, by which networks.

  Attributes:
    prediction: the key of `inference.make_inference_fn`'s output scored.
    keypoints: 'joints' or 'contour', the batch's ground truth it is scored on.
    models: the networks this setting runs (counted and timed).
    ground_truth_joints: the triplet model is fed with ground-truth joints.
  """
  prediction: str
  keypoints: str
  models: inference.PoseModels
  ground_truth_joints: bool = False

  @property
  def model(self) -> inference.LoadedModel:
    """The model whose workdir and step the row names (the last one run)."""
    return self.models.models[-1]


def settings_for(models: inference.PoseModels) -> dict[str, Setting]:
  """The settings `models` can be evaluated in, in table order."""
  PoseModels = inference.PoseModels  # pylint: disable=invalid-name
  joint, triplet, combined = models.joint, models.triplet, models.combined
  settings = {}
  if combined:
    settings[COMBINED_JOINTS] = Setting("joints", "joints", PoseModels(combined=combined))
    settings[COMBINED_CONTOUR] = Setting("contour", "contour", PoseModels(combined=combined))
  if joint:
    settings[JOINT] = Setting("joints", "joints", PoseModels(joint=joint))
  if triplet and joint:
    settings[TRIPLET_PREDICTED] = Setting("contour", "contour",
                                          PoseModels(joint=joint, triplet=triplet))
  if triplet:
    settings[TRIPLET_GT] = Setting("contour_gt", "contour", PoseModels(triplet=triplet),
                                   ground_truth_joints=True)
  return settings


def _cost_key(models: inference.PoseModels, ground_truth_joints: bool):
  return tuple(id(m) for m in models.models), ground_truth_joints


def measure_speed(settings: dict[str, Setting], batch: dict[str, np.ndarray], *,
                  flip_test: bool, repeats: int,
                  compiled: dict | None = None) -> dict[str, float]:
  """Inference ms per image of every setting on `batch` (`inference.ms_per_image`).

  Settings that run the same networks share one measurement.

  Args:
    settings: from `settings_for`.
    batch: a batch with `image`, `joints` and `joints_visible`; its size is
      the batch size timed.
    flip_test: as in evaluation.
    repeats: timed batches (the median is reported).
    compiled: {`_cost_key`: jitted inference fn} to reuse instead of compiling.
  """
  compiled = dict(compiled or {})
  args = jax.device_put((batch["image"], batch["joints"], batch["joints_visible"]))
  measured, result = {}, {}
  for name, setting in settings.items():
    key = _cost_key(setting.models, setting.ground_truth_joints)
    if key not in measured:
      fn = compiled.get(key) or inference.make_inference_fn(
          setting.models, flip_test=flip_test,
          ground_truth_joints=setting.ground_truth_joints)
      variables = jax.device_put(setting.models.variables())
      measured[key] = inference.ms_per_image(fn, variables, *args,
                                             batch_size=len(batch["image"]),
                                             repeats=repeats)
    result[name] = measured[key]
  return result


def evaluate_models(models: inference.PoseModels, input_config: ml_collections.ConfigDict,
                    *, split: str | None = None, batch_size: int | None = None,
                    num_batches: int | None = None, flip_test: bool = True,
                    timing_batches: int = 5, seed: int = 0,
                    phosphene_error: bool = True,
                    phosphene_config: ml_collections.ConfigDict | None = None,
                    progress: bool = False) -> dict[str, Any]:
  """PCKh, parameters and speed of every available setting over one pass of `split`.

  Args:
    models: the joint and/or triplet model, or a combined model.
    input_config: the `config.input` section naming the dataset.
    split: default `input_config.eval_split`.
    batch_size: default `input_config.eval_batch_size`.
    num_batches: stop after this many batches (None: the whole split).
    flip_test: average with the mirrored input's heatmaps.
    timing_batches: timed batches per setting (median; 0: no timing).
    seed: the iterator's seed.
    phosphene_error: also compare the phosphene images of the predicted and
      the true poses (adds 'phosphene_nmse' and 'phosphene_ssim').
    phosphene_config: its simulator (a `config.phosphene` section; default
      `config.phosphene_config()`, the phosphene loss's default).
    progress: show a tqdm progress bar.

  Returns:
    {'split', 'input', 'flip_test', 'persons', 'timing': {'device',
    'batch_size', 'timed_batches'} or None, 'settings': {setting:
    {'keypoints': 'joints'|'contour', 'workdir', 'step', 'params': int,
    'ms_per_image': float or None, **metrics.pckh_report(...),
    **phosphene_loss.phosphene_errors(...)}}}.

  Raises:
    ValueError: when the data's image size differs from the models', or the
      split is empty.
  """
  split = split or input_config.eval_split
  size = models.image_size
  if input_config.image_size != size:
    raise ValueError(f"config.input.image_size={input_config.image_size} but the "
                     f"models were trained at {size}")
  settings = settings_for(models)
  with_gt = TRIPLET_GT in settings
  infer = inference.make_inference_fn(models, flip_test=flip_test,
                                      ground_truth_joints=with_gt)
  variables = models.variables()
  iterator = data.create_iterator(input_config, split=split,
                                  batch_size=batch_size or input_config.eval_batch_size,
                                  seed=seed, shuffle=False, repeat=False)
  if progress:
    import tqdm  # pylint: disable=g-import-not-at-top
    iterator = tqdm.tqdm(iterator, desc=f"evaluating {split}", unit="batch",
                         total=num_batches)
  collected = {name: {"pred": [], "gt": [], "visible": [], "pred_crop": [], "gt_crop": []}
               for name in settings}
  head_sizes, first_batch = [], None
  for i, batch in enumerate(iterator):
    if num_batches is not None and i >= num_batches:
      break
    first_batch = batch if first_batch is None else first_batch
    out = jax.device_get(infer(variables, batch["image"], batch["joints"],
                               batch["joints_visible"]))
    valid = np.asarray(batch["valid"], bool)
    affine = np.asarray(batch["crop_to_original"])[valid]
    head_sizes.append(np.asarray(batch["head_size"])[valid] * crop_scale(affine))
    for name, setting in settings.items():
      gt_key = setting.keypoints
      collected[name]["pred"].append(to_original(out[setting.prediction][valid], affine))
      collected[name]["gt"].append(to_original(batch[gt_key][valid], affine))
      collected[name]["visible"].append(np.asarray(batch[f"{gt_key}_visible"])[valid])
      collected[name]["pred_crop"].append(np.asarray(out[setting.prediction])[valid])
      collected[name]["gt_crop"].append(np.asarray(batch[gt_key])[valid])
  if not head_sizes or not sum(len(h) for h in head_sizes):
    raise ValueError(f"split {split!r} of input {input_config.name!r} yielded no examples")
  speed, timing = {}, None
  if timing_batches > 0:
    speed = measure_speed(settings, first_batch, flip_test=flip_test,
                          repeats=timing_batches,
                          compiled={_cost_key(models, with_gt): infer})
    timing = {"device": inference.device_description(),
              "batch_size": int(len(first_batch["image"])),
              "timed_batches": int(timing_batches)}
  head_size = np.concatenate(head_sizes)
  results = {"split": split, "input": input_config.name, "flip_test": flip_test,
             "persons": int(head_size.size), "timing": timing, "settings": {}}
  if phosphene_error:
    phosphene_config = phosphene_config or config_lib.phosphene_config()
    simulator = phosphene_loss.create_simulator(phosphene_config)
    results["phosphenes"] = phosphene_config.to_dict()
  for name, setting in settings.items():
    arrays = {k: np.concatenate(v) for k, v in collected[name].items()}
    report = metrics.pckh_report(arrays["pred"], arrays["gt"], arrays["visible"], head_size)
    if phosphene_error:
      report.update(phosphene_loss.phosphene_errors(
          simulator, arrays["pred_crop"], arrays["gt_crop"], arrays["visible"],
          keypoints=setting.keypoints, image_size=size,
          line_width=phosphene_config.line_width))
    results["settings"][name] = {
        "keypoints": setting.keypoints, "workdir": setting.model.workdir,
        "step": setting.model.step, "params": setting.models.num_parameters(),
        "ms_per_image": speed.get(name), **report}
  return results


def evaluate_checkpoints(workdir: str | pathlib.Path, *,
                         config: ml_collections.ConfigDict | None = None,
                         joint_workdir: str | None = None, step: int | None = None,
                         joint_step: int | None = None, **kwargs) -> dict[str, Any]:
  """Restores the model of `workdir` (and a joint model for a triplet one) and evaluates.

  Args:
    workdir: a joint, triplet or combined training workdir.
    config: evaluation config; its `input` section picks the data (default:
      the workdir's own config).
    joint_workdir: for a triplet model, the joint model predicting its input
      joints (default: the triplet config's `joint_workdir`; without one only
      the ground-truth setting is evaluated).
    step: checkpoint step of `workdir` (default: newest).
    joint_step: checkpoint step of the joint workdir.
    **kwargs: passed to `evaluate_models`.

  Raises:
    ValueError: for an unknown model target, or a `joint_workdir` given
      with a model that is not a triplet model.
  """
  evaluated = inference.load_model(workdir, step=step,
                                   expect=("joints", "contour", "combined"))
  if evaluated.target != "contour" and joint_workdir:
    raise ValueError(f"joint_workdir is for a triplet model; {workdir} holds a "
                     f"model.target={evaluated.target!r} model")
  if evaluated.target == "joints":
    models = inference.PoseModels(joint=evaluated)
  elif evaluated.target == "combined":
    models = inference.PoseModels(combined=evaluated)
  else:
    joint_workdir = joint_workdir or evaluated.config.get("joint_workdir") or None
    joint = (inference.load_model(joint_workdir, step=joint_step, expect="joints")
             if joint_workdir else None)
    if joint is None:
      logging.warning("no --joint_workdir: the triplet model is evaluated on "
                      "ground-truth joints only")
    models = inference.PoseModels(joint=joint, triplet=evaluated)
  input_config = (config or evaluated.config).input
  results = evaluate_models(models, input_config, seed=(config or evaluated.config).seed,
                            **kwargs)
  results.update(workdir=str(workdir), step=evaluated.step, target=evaluated.target,
                 joint_workdir=joint_workdir)
  return results


def _format_count(n: int) -> str:
  """A parameter count in 6 characters: 850, 12.3k, 6.73M."""
  if n < 1000:
    return str(n)
  value, unit = (n / 1e6, "M") if n >= 1e6 else (n / 1e3, "k")
  return f"{value:.{max(0, 2 - int(np.log10(value)))}f}{unit}"


def _format_ms(ms: float) -> str:
  """Three significant digits without an exponent: 0.0412, 8.85, 10.4, 1234."""
  return f"{ms:.{max(0, 2 - int(np.floor(np.log10(ms))))}f}"


def format_table(results: dict[str, Any]) -> str:
  """PCKh@0.5 in % in the layout of the papers, one row per setting.

  Each row ends with the parameters of the network(s) of the setting and
  their inference ms per image, when the results have them.
  """
  lines = [f"PCKh@0.5 (%) on {results.get('input', '?')}/{results['split']}, "
           f"{results['persons']} persons, flip test {'on' if results['flip_test'] else 'off'}"]
  width = max(len(SETTING_LABELS[k]) for k in results["settings"]) + 2
  for keypoints, columns, title in (("joints", JOINT_COLUMNS, "Joints"),
                                    ("contour", CONTOUR_COLUMNS, "Contour points")):
    rows = {k: v for k, v in results["settings"].items() if v["keypoints"] == keypoints}
    if not rows:
      continue
    names = [short for _, short in columns] + ["Mean", "@0.1", "AUC"]
    lines += ["", title, " " * width + "".join(f"{n:>7}" for n in names)
              + f"{'Params':>9}{'ms/img':>9}"]
    for name, row in rows.items():
      values = [row["groups"][g] for g, _ in columns]
      values += [row["groups"]["Mean"], row["Mean@0.1"], row["AUC"]]
      params, ms = row.get("params"), row.get("ms_per_image")
      lines.append(f"{SETTING_LABELS[name]:<{width}}"
                   + "".join(f"{100 * v:>7.1f}" for v in values)
                   + f"{_format_count(params) if params else '-':>9}"
                   + f"{_format_ms(ms) if ms else '-':>9}")
  with_phosphenes = {f"{SETTING_LABELS[k]} ({v['keypoints']})": v
                     for k, v in results["settings"].items() if "phosphene_nmse" in v}
  if with_phosphenes:
    sim = results.get("phosphenes", {})
    label_width = max(map(len, with_phosphenes)) + 2
    lines += ["", f"Phosphene-space error, predicted vs true pose "
              f"({sim.get('num_phosphenes', '?')} phosphenes, {sim.get('resolution', '?')} px)",
              " " * label_width + f"{'NMSE':>7}{'SSIM':>7}"]
    lines += [f"{label:<{label_width}}{row['phosphene_nmse']:>7.3f}{row['phosphene_ssim']:>7.3f}"
              for label, row in with_phosphenes.items()]
  timing = results.get("timing")
  if timing:
    lines += ["", "Params: parameters of the network(s) the setting runs.",
              f"ms/img: inference time per image, median of {timing['timed_batches']} "
              f"jitted batches of {timing['batch_size']} after warm-up, flip test "
              f"{'on' if results['flip_test'] else 'off'}, on {timing['device']}."]
  return "\n".join(lines)


def write_results(results: dict[str, Any], out_dir: str | pathlib.Path) -> dict[str, pathlib.Path]:
  """Writes metrics.json, pckh_curve.png and table.txt into `out_dir`."""
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  paths = {"metrics": out_dir / "metrics.json", "curve": out_dir / "pckh_curve.png",
           "table": out_dir / "table.txt"}
  paths["metrics"].write_text(json.dumps(results, indent=2, allow_nan=True))
  paths["table"].write_text(format_table(results) + "\n")
  curves = {f"{SETTING_LABELS[k]} ({v['keypoints']}), AUC {100 * v['AUC']:.1f}":
            (v["curve"]["threshold"], v["curve"]["Mean"])
            for k, v in results["settings"].items()}
  fig = viz.pckh_curve_figure(curves, title=f"PCKh vs threshold, step {results.get('step')}")
  viz.save_figure(fig, paths["curve"])
  return paths


def training_eval_summary(config: ml_collections.ConfigDict, heatmaps_batch,
                          batch, *, keypoints: str | None = None,
                          max_panel_examples: int = 4
                          ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
  """PCKh scalars and a panel image from what `train.eval_step` returns.

  Args:
    config: the training config (`model.target` picks joints or contour).
    heatmaps_batch: (B, h, w, K) last-stack heatmaps, or a list of such
      arrays (one per evaluated batch).
    batch: the matching batch (dict of arrays), or a list of batches.
    keypoints: 'joints' or 'contour', what the heatmaps locate; default
      `config.model.target` ('joints' for a combined model).
    max_panel_examples: examples shown in the panel.

  Returns:
    scalars: {'pckh_<group>': ..., 'pckh_Mean': ..., 'pckh_Mean@0.1': ...}
      over the valid examples (groups without annotations are left out).
    images: {'panel': (H, W, 3) uint8} predictions and heatmaps.
  """
  if isinstance(heatmaps_batch, (list, tuple)):
    maps = np.concatenate([np.asarray(h) for h in heatmaps_batch])
    batch = {k: np.concatenate([np.asarray(b[k]) for b in batch]) for k in batch[0]}
  else:
    maps, batch = np.asarray(heatmaps_batch), {k: np.asarray(v) for k, v in batch.items()}
  key = keypoints or ("contour" if config.model.target == "contour" else "joints")
  if key not in ("joints", "contour"):
    raise ValueError(f"keypoints must be 'joints' or 'contour', got {key!r}")
  valid = batch["valid"].astype(bool)
  size = batch["image"].shape[1]
  coords, _ = inference.decode_to_input_pixels(jnp.asarray(maps), size)
  coords = np.asarray(coords)
  affine = batch["crop_to_original"][valid]
  pred, gt = to_original(coords[valid], affine), to_original(batch[key][valid], affine)
  head = batch["head_size"][valid] * crop_scale(affine)
  visible = batch[f"{key}_visible"][valid]
  scalars = {}
  if valid.any():
    scalars = {f"pckh_{k}": v for k, v in
               metrics.pckh(pred, gt, visible, head, threshold=0.5).items()}
    scalars["pckh_Mean@0.1"] = metrics.pckh(pred, gt, visible, head, threshold=0.1)["Mean"]
  scalars = {k: float(v) for k, v in scalars.items() if np.isfinite(v)}
  index = np.flatnonzero(valid)[:max_panel_examples]
  panel = viz.prediction_grid(batch["image"][index], coords[index], gt=batch[key][index],
                              gt_visible=batch[f"{key}_visible"][index],
                              heatmaps=maps[index], max_examples=max_panel_examples)
  return scalars, {"panel": panel}

