"""Evaluation of trained checkpoints: flip-test inference, PCKh, tables and files.

* `predict_heatmaps`: last-stack heatmaps, averaged with those of the mirrored
  input (flip test). Integer coordinates are pixel centres, so mirroring a
  heatmap row (x -> w - 1 - x) is exactly the mirror of the image
  (x -> W - 1 - x): no half-pixel shift is needed.
* `PoseModels` + `make_inference_fn`: one jitted function running the joint
  model and the triplet model (fed with ground-truth joints and/or with the
  joint model's predictions), shared by evaluation and `prediction`.
* `evaluate_checkpoints`: runs a split and computes PCKh in original image
  pixels (predictions mapped back with `crop_to_original`) for up to three
  settings side by side: the joint model; the triplet model fed with the
  joint model's predicted joints (the realistic setting); the triplet model
  fed with ground-truth joints (the thesis setting).
* `format_table` (paper layout), `write_results` (metrics.json, PCKh curve).
* `training_eval_summary`: PCKh scalars and a panel during training.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from triplet_pose import data
from triplet_pose import heatmaps as hm
from triplet_pose import inputs
from triplet_pose import keypoints as kp
from triplet_pose import metrics
from triplet_pose import transforms
from triplet_pose import viz

JOINT = "joint_model"
TRIPLET_PREDICTED = "triplet_predicted_joints"
TRIPLET_GT = "triplet_ground_truth_joints"
SETTING_LABELS = {
    JOINT: "joint model",
    TRIPLET_PREDICTED: "triplet, predicted joints",
    TRIPLET_GT: "triplet, ground-truth joints",
}
# Column order and short names of the paper tables (Newell et al. 2016).
JOINT_COLUMNS = (("Head", "Head"), ("Shoulder", "Sho."), ("Elbow", "Elb."),
                 ("Wrist", "Wri."), ("Hip", "Hip"), ("Knee", "Knee"), ("Ankle", "Ank."))
CONTOUR_COLUMNS = (("Neck", "Neck"),) + JOINT_COLUMNS[1:]


def flip_input_images(x: jax.Array) -> jax.Array:
  """Mirrors model inputs (B, H, W, C); joint-heatmap channels (3:) are permuted."""
  x = x[:, :, ::-1]
  if x.shape[-1] == 3:
    return x
  perm = np.asarray(kp.JOINT_FLIP_PERMUTATION) + 3
  return jnp.concatenate([x[..., :3], x[..., perm]], axis=-1)


def unflip_heatmaps(maps: jax.Array) -> jax.Array:
  """Maps heatmaps (B, h, w, K) predicted on a mirrored input back, permuted."""
  kind = "joints" if maps.shape[-1] == kp.NUM_JOINTS else "contour"
  return maps[:, :, ::-1][..., np.asarray(kp.flip_permutation(kind))]


def predict_heatmaps(apply_fn: Callable[[Any, jax.Array], jax.Array], variables: Any,
                     x: jax.Array, *, flip_test: bool = True) -> jax.Array:
  """Last-stack heatmaps (B, h, w, K), averaged with the mirror's when `flip_test`.

  Args:
    apply_fn: (variables, inputs (B, H, W, C)) -> (B, S, h, w, K), e.g.
      `functools.partial(model.apply, train=False)`.
    variables: the model's {params, batch_stats}.
    x: float32 model inputs.
    flip_test: also run the mirrored input (in the same batch) and average.
  """
  if not flip_test:
    return apply_fn(variables, x)[:, -1]
  both = apply_fn(variables, jnp.concatenate([x, flip_input_images(x)], axis=0))[:, -1]
  n = x.shape[0]
  return 0.5 * (both[:n] + unflip_heatmaps(both[n:]))


def decode_to_input_pixels(maps: jax.Array, image_size: int) -> tuple[jax.Array, jax.Array]:
  """Heatmaps (B, h, w, K) -> keypoints (B, K, 2) in input pixels, confidence (B, K)."""
  coords, confidence = hm.decode(maps)
  return hm.rescale_coordinates(coords, maps.shape[1:3], image_size), confidence


def quiet_read_only_warnings() -> None:
  """Drops orbax's warnings that a checkpoint directory is opened read-only.

  Evaluation and prediction open checkpoints read-only on purpose; the
  warnings would bury the table in the log.
  """
  import logging as py_logging  # pylint: disable=g-import-not-at-top
  py_logging.getLogger("absl").addFilter(
      lambda record: not any(s in record.getMessage()
                             for s in ("read only", "read_only=True")))


@dataclasses.dataclass
class LoadedModel:
  """A trained model restored from a workdir."""
  config: ml_collections.ConfigDict
  model: Any
  variables: Any
  workdir: str
  step: int


def load_model(workdir: str | pathlib.Path, *, step: int | None = None,
               expect: str | None = None) -> LoadedModel:
  """Restores the model of a training workdir (newest checkpoint by default).

  Raises:
    FileNotFoundError: no config.json or checkpoint in `workdir`.
    ValueError: the workdir's model does not predict `expect`.
  """
  from triplet_pose import checkpointing, train  # pylint: disable=g-import-not-at-top
  config, model, variables = train.load_trained_model(workdir, step=step)
  if expect is not None and config.model.target != expect:
    raise ValueError(f"{workdir} holds a model.target={config.model.target!r} model, "
                     f"expected {expect!r}")
  if step is None:
    step = checkpointing.Checkpointer(workdir, read_only=True).latest_step()
  return LoadedModel(config, model, variables, str(workdir), int(step))


@dataclasses.dataclass
class PoseModels:
  """The joint model and/or the triplet model used together."""
  joint: LoadedModel | None = None
  triplet: LoadedModel | None = None

  @property
  def image_size(self) -> int:
    sizes = {m.config.input.image_size for m in (self.joint, self.triplet) if m}
    if len(sizes) != 1:
      raise ValueError(f"the joint and triplet models were trained at different "
                       f"input sizes {sorted(sizes)}")
    return sizes.pop()

  def variables(self) -> dict[str, Any]:
    return {"joint": self.joint.variables if self.joint else None,
            "triplet": self.triplet.variables if self.triplet else None}


def make_inference_fn(models: PoseModels, *, flip_test: bool = True,
                      ground_truth_joints: bool = False):
  """A jitted (variables, images, gt_joints, gt_visible) -> dict of predictions.

  `images` are (B, S, S, 3) uint8 or float crops at the models' input size;
  `gt_joints` (B, 16, 2) in crop pixels and `gt_visible` (B, 16) feed the
  triplet model when `ground_truth_joints` (pass None otherwise).

  The result holds, for what `models` has: `joints`, `joint_confidence`,
  `joint_heatmaps` (joint model); `contour`, `contour_confidence`,
  `contour_heatmaps` (triplet model on predicted joints, needs both models);
  `contour_gt`, `contour_gt_confidence`, `contour_gt_heatmaps` (triplet model
  on ground-truth joints). Keypoints are in crop pixels.
  """
  joint, triplet = models.joint, models.triplet
  size = models.image_size

  def run_triplet(variables, images, joints, visible):
    joint_maps = inputs.joint_input_heatmaps(triplet.config, joints, visible,
                                             image_size=size)
    x = jnp.concatenate([images, joint_maps], axis=-1)
    apply = functools.partial(triplet.model.apply, train=False)
    maps = predict_heatmaps(apply, variables, x, flip_test=flip_test)
    return maps, *decode_to_input_pixels(maps, size)

  def infer(variables, images, gt_joints=None, gt_visible=None):
    images = inputs.images_to_float(images)
    out = {}
    if joint is not None:
      apply = functools.partial(joint.model.apply, train=False)
      maps = predict_heatmaps(apply, variables["joint"], images, flip_test=flip_test)
      coords, conf = decode_to_input_pixels(maps, size)
      out.update(joints=coords, joint_confidence=conf, joint_heatmaps=maps)
      if triplet is not None:
        maps, coords, conf = run_triplet(variables["triplet"], images, coords,
                                         jnp.ones(coords.shape[:-1], jnp.float32))
        out.update(contour=coords, contour_confidence=conf, contour_heatmaps=maps)
    if triplet is not None and ground_truth_joints:
      maps, coords, conf = run_triplet(variables["triplet"], images, gt_joints,
                                       gt_visible.astype(jnp.float32))
      out.update(contour_gt=coords, contour_gt_confidence=conf, contour_gt_heatmaps=maps)
    return out

  return jax.jit(infer)


def crop_scale(crop_to_original: np.ndarray) -> np.ndarray:
  """Original pixels per crop pixel (B,) of (B, 2, 3) similarity affines."""
  return np.sqrt(np.abs(np.linalg.det(np.asarray(crop_to_original, np.float64)[..., :2])))


def to_original(points, crop_to_original) -> np.ndarray:
  """(B, K, 2) crop pixels -> original image pixels."""
  return transforms.apply_affine(np.asarray(crop_to_original, np.float64),
                                 np.asarray(points, np.float64))


def _settings_for(models: PoseModels) -> dict[str, tuple[str, str]]:
  """setting -> (prediction key, ground-truth key of the batch)."""
  settings = {}
  if models.joint:
    settings[JOINT] = ("joints", "joints")
  if models.triplet and models.joint:
    settings[TRIPLET_PREDICTED] = ("contour", "contour")
  if models.triplet:
    settings[TRIPLET_GT] = ("contour_gt", "contour")
  return settings


def evaluate_models(models: PoseModels, input_config: ml_collections.ConfigDict, *,
                    split: str | None = None, batch_size: int | None = None,
                    num_batches: int | None = None, flip_test: bool = True,
                    seed: int = 0, progress: bool = False) -> dict[str, Any]:
  """PCKh of every available setting over one pass of `split`.

  Args:
    models: the joint and/or triplet model.
    input_config: the `config.input` section naming the dataset.
    split: default `input_config.eval_split`.
    batch_size: default `input_config.eval_batch_size`.
    num_batches: stop after this many batches (None: the whole split).
    flip_test: average with the mirrored input's heatmaps.
    seed: the iterator's seed.
    progress: show a tqdm progress bar.

  Returns:
    {'split', 'flip_test', 'persons', 'settings': {setting: {'keypoints':
    'joints'|'contour', 'workdir', 'step', **metrics.pckh_report(...)}}}.

  Raises:
    ValueError: when the data's image size differs from the models'.
  """
  split = split or input_config.eval_split
  size = models.image_size
  if input_config.image_size != size:
    raise ValueError(f"config.input.image_size={input_config.image_size} but the "
                     f"models were trained at {size}")
  settings = _settings_for(models)
  infer = make_inference_fn(models, flip_test=flip_test,
                            ground_truth_joints=TRIPLET_GT in settings)
  variables = models.variables()
  iterator = data.create_iterator(input_config, split=split,
                                  batch_size=batch_size or input_config.eval_batch_size,
                                  seed=seed, shuffle=False, repeat=False)
  if progress:
    import tqdm  # pylint: disable=g-import-not-at-top
    iterator = tqdm.tqdm(iterator, desc=f"evaluating {split}", unit="batch",
                         total=num_batches)
  collected = {name: {"pred": [], "gt": [], "visible": []} for name in settings}
  head_sizes = []
  for i, batch in enumerate(iterator):
    if num_batches is not None and i >= num_batches:
      break
    out = jax.device_get(infer(variables, batch["image"], batch["joints"],
                               batch["joints_visible"]))
    valid = np.asarray(batch["valid"], bool)
    affine = np.asarray(batch["crop_to_original"])[valid]
    head_sizes.append(np.asarray(batch["head_size"])[valid] * crop_scale(affine))
    for name, (pred_key, gt_key) in settings.items():
      collected[name]["pred"].append(to_original(out[pred_key][valid], affine))
      collected[name]["gt"].append(to_original(batch[gt_key][valid], affine))
      collected[name]["visible"].append(np.asarray(batch[f"{gt_key}_visible"])[valid])
  if not head_sizes or not sum(len(h) for h in head_sizes):
    raise ValueError(f"split {split!r} of input {input_config.name!r} yielded no examples")
  head_size = np.concatenate(head_sizes)
  results = {"split": split, "input": input_config.name, "flip_test": flip_test,
             "persons": int(head_size.size), "settings": {}}
  for name, (_, gt_key) in settings.items():
    arrays = {k: np.concatenate(v) for k, v in collected[name].items()}
    report = metrics.pckh_report(arrays["pred"], arrays["gt"], arrays["visible"], head_size)
    model = models.joint if name == JOINT else models.triplet
    results["settings"][name] = {"keypoints": gt_key, "workdir": model.workdir,
                                 "step": model.step, **report}
  return results


def evaluate_checkpoints(workdir: str | pathlib.Path, *,
                         config: ml_collections.ConfigDict | None = None,
                         joint_workdir: str | None = None, step: int | None = None,
                         joint_step: int | None = None, **kwargs) -> dict[str, Any]:
  """Restores the model of `workdir` (and a joint model for a triplet one) and evaluates.

  Args:
    workdir: a joint or triplet training workdir.
    config: evaluation config; its `input` section picks the data (default:
      the workdir's own config).
    joint_workdir: for a triplet model, the joint model predicting its input
      joints (default: the triplet config's `joint_workdir`; without one only
      the ground-truth setting is evaluated).
    step: checkpoint step of `workdir` (default: newest).
    joint_step: checkpoint step of the joint workdir.
    **kwargs: passed to `evaluate_models`.
  """
  evaluated = load_model(workdir, step=step)
  if evaluated.config.model.target not in ("joints", "contour"):
    raise ValueError(f"{workdir} holds a model.target={evaluated.config.model.target!r} "
                     "model; evaluation handles 'joints' and 'contour' models")
  if evaluated.config.model.target == "joints":
    models = PoseModels(joint=evaluated)
  else:
    joint_workdir = joint_workdir or evaluated.config.get("joint_workdir") or None
    joint = load_model(joint_workdir, step=joint_step, expect="joints") if joint_workdir else None
    if joint is None:
      logging.warning("no --joint_workdir: the triplet model is evaluated on "
                      "ground-truth joints only")
    models = PoseModels(joint=joint, triplet=evaluated)
  input_config = (config or evaluated.config).input
  results = evaluate_models(models, input_config, seed=(config or evaluated.config).seed,
                            **kwargs)
  results.update(workdir=str(workdir), step=evaluated.step, joint_workdir=joint_workdir)
  return results


def format_table(results: dict[str, Any]) -> str:
  """PCKh@0.5 in % in the layout of the papers, one row per setting."""
  lines = [f"PCKh@0.5 (%) on {results.get('input', '?')}/{results['split']}, "
           f"{results['persons']} persons, flip test {'on' if results['flip_test'] else 'off'}"]
  width = max(len(SETTING_LABELS[k]) for k in results["settings"]) + 2
  for keypoints, columns, title in (("joints", JOINT_COLUMNS, "Joints"),
                                    ("contour", CONTOUR_COLUMNS, "Contour points")):
    rows = {k: v for k, v in results["settings"].items() if v["keypoints"] == keypoints}
    if not rows:
      continue
    names = [short for _, short in columns] + ["Mean", "@0.1", "AUC"]
    lines += ["", title, " " * width + "".join(f"{n:>7}" for n in names)]
    for name, row in rows.items():
      values = [row["groups"][g] for g, _ in columns]
      values += [row["groups"]["Mean"], row["Mean@0.1"], row["AUC"]]
      lines.append(f"{SETTING_LABELS[name]:<{width}}"
                   + "".join(f"{100 * v:>7.1f}" for v in values))
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
  coords, _ = decode_to_input_pixels(jnp.asarray(maps), size)
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

