"""Several people per image: the MPII multi-person AP as a metric, and beside it.

`MultiPersonAp` accumulates, per image, the predicted persons (P, K, 3) and
the ground truth of a scene batch, both mapped to original pixels through
`crop_to_original` (head sizes scaled with them), and reports:

* `map` and the AP per joint and per PCKh group (`metrics.multi_person_ap`);
* the person-count accuracy (`metrics.person_count_accuracy`), and the
  shares of images with too few and too many persons;
* AP per occlusion bin (persons by the share of their joints hidden,
  `scene_features.OCCLUSION_BINS`) and per crowd-index bin (images,
  `scene_features.CROWD_BINS`);
* the grouping ceiling: the true joints grouped by the predicted tags,
  when the predictions carry `ceiling` persons.

`MultiPersonAp.intervals` says how well the images pin these down: a
percentile bootstrap over images (the report of images drawn with
replacement, again and again).

`single_person_baseline` scores the single-person pipeline on the same
images: the joint model on the crop of every ground-truth box.

`create_evaluator` builds the evaluator training runs for a model of
several people (`associative_embedding.TARGET`). With several processes each
one accumulates its share of the images; the report gathers every
process's images first (a collective), so it covers the whole split, once,
and equals the report of one process.
"""

from __future__ import annotations

from typing import Any

from absl import logging
import jax
import ml_collections
import numpy as np
import tqdm

from triplet_pose import data
from triplet_pose import grouping
from triplet_pose import keypoints as kp
from triplet_pose import metrics
from triplet_pose import parallel
from triplet_pose import top_down
from triplet_pose import transforms
from triplet_pose.data import scene_features as sf
from triplet_pose.evaluators import common
from triplet_pose.evaluators.common import Evaluator
from triplet_pose.evaluators.training import Loss


class MultiPersonAp:
  """Multi-person AP of predicted persons over scene batches.

  Args:
    prefix: prepended to the scalar names of `result()`.
    threshold: in head sizes.
  """

  def __init__(self, *, prefix: str = "", threshold: float = 0.5):
    self.prefix = prefix
    self.threshold = threshold
    self.images: list[dict[str, Any]] = []  # this process's images
    self._gathered: list[dict[str, Any]] | None = None  # `all_images()`, once

  def update(self, batch: common.Batch, predictions: dict[str, Any]) -> None:
    for i in np.flatnonzero(np.asarray(batch["valid"], bool)):
      real = np.asarray(batch["persons_valid"][i], bool)
      affine = np.asarray(batch["crop_to_original"][i], np.float64)
      scale = float(transforms.crop_scale(affine))
      visible = np.asarray(batch["joints_visible"][i])[real] > 0
      image = {
          "joints": transforms.to_original(np.asarray(batch["joints"][i])[real], affine),
          "visible": visible,
          "head": np.asarray(batch["head_size"][i], np.float64)[real] * scale,
          "occlusion_bin": sf.occlusion_bin(sf.occlusion_fraction(
              np.asarray(batch["joints_occlusion"][i])[real], visible)),
          "crowd_bin": int(sf.crowd_bin(batch["crowd_index"][i])),
          "count": int(batch["num_persons"][i]) if "num_persons" in batch else int(real.sum()),
      }
      for key in ("persons", "ceiling"):
        if key in predictions:
          image[key] = _to_original(predictions[key][i], affine)
      self.images.append(image)
    self._gathered = None

  def all_images(self) -> list[dict[str, Any]]:
    """Every process's images, in the order one process would have read them.

    A collective on several processes: every process must call it (as
    `report` and `result` do).
    """
    if self._gathered is None:
      self._gathered = _interleave(parallel.gather_json(self.images))
    return self._gathered

  def _ap(self, key: str, *, images, person_mask=None) -> dict:
    truth = [(im["joints"], im["visible"], im["head"]) for im in images]
    return metrics.multi_person_ap([im[key] for im in images], truth, self.threshold,
                                   person_mask=person_mask)

  def report(self) -> dict[str, Any]:
    """Everything a results table needs, JSON-serialisable.

    Raises:
      ValueError: when no valid image was seen.
    """
    images = self._evaluated_images()
    report = self._summary(images)
    if report["persons_left_out"]:
      logging.warning("multi-person AP: %d persons of %d images were past input.max_persons "
                      "and left out of the ground truth (raise it to evaluate them)",
                      report["persons_left_out"],
                      sum(im["count"] > len(im["joints"]) for im in images))
    return report

  def intervals(self, *, resamples: int = 1000, level: float = 0.95, seed: int = 0,
                progress: bool = False) -> dict[str, Any]:
    """Percentile bootstrap intervals over images of the report's figures.

    Each resample draws as many images as were evaluated, with replacement,
    and takes their report; a figure's interval holds the central `level`
    of its values (a bin missing from a resample leaves that value out).
    `progress` shows a bar with the rate and the time left.

    Returns:
      {'map', 'count_accuracy', 'ceiling_map' (with ceilings): [low, high];
       'by_occlusion', 'by_crowd': {bin: [low, high]}; 'resamples', 'level'}.
    """
    if resamples < 2 or not 0 < level < 1:
      raise ValueError(f"intervals: resamples must be at least 2 and level in (0, 1), got "
                       f"{resamples} and {level}")
    images = self._evaluated_images()
    rng = np.random.default_rng(seed)
    drawn = [self._summary([images[j] for j in rng.integers(0, len(images), len(images))])
             for _ in tqdm.trange(resamples, desc="bootstrapping the images",
                                  unit="resample", disable=not progress)]
    tails = [50 * (1 - level), 50 * (1 + level)]

    def interval(values):
      values = np.asarray(values, np.float64)
      values = values[np.isfinite(values)]
      return [float(v) for v in np.percentile(values, tails)] if values.size else None

    out = {"resamples": resamples, "level": level}
    for key in ("map", "count_accuracy", "ceiling_map"):
      if key in drawn[0]:
        out[key] = interval([r[key] for r in drawn])
    full = self._summary(images)
    for group in ("by_occlusion", "by_crowd"):
      out[group] = {b: interval([r[group].get(b, np.nan) for r in drawn]) for b in full[group]}
    return out

  def _evaluated_images(self) -> list[dict[str, Any]]:
    """`all_images`, at least one (a collective, as `all_images` is)."""
    images = self.all_images()  # before any check: the others wait for this one
    if not images:
      raise ValueError("no valid image was evaluated (an empty split?)")
    return images

  def _summary(self, images: list[dict[str, Any]]) -> dict[str, Any]:
    """`report` of the given images (at least one)."""
    overall = self._ap("persons", images=images)
    ap = overall["ap"]
    found = np.array([len(im["persons"]) for im in images])
    true = np.array([im["count"] for im in images])
    annotated = np.array([len(im["joints"]) for im in images])
    # Persons past `input.max_persons` are not in the batch: their joints
    # cannot be positives, and a prediction of them counts as false.
    left_out = true - annotated
    report = {
        "threshold": self.threshold, "images": len(images),
        "persons": int(annotated.sum()),
        "map": overall["map"],
        "per_joint": {n: float(v) for n, v in zip(kp.JOINT_NAMES, ap)},
        "groups": {g: float(np.nanmean(ap[list(m)])) if np.isfinite(ap[list(m)]).any()
                   else float("nan") for g, m in kp.PCKH_GROUPS.items()},
        "count_accuracy": metrics.person_count_accuracy(found, true),
        "count_too_few": float(np.mean(found < true)),
        "count_too_many": float(np.mean(found > true)),
        "persons_left_out": int(left_out.sum()),
        "by_occlusion": {}, "by_crowd": {},
    }
    for b, name in enumerate(sf.OCCLUSION_BINS):
      masks = [im["occlusion_bin"] == b for im in images]
      if any(m.any() for m in masks):
        report["by_occlusion"][name] = self._ap("persons", images=images,
                                                person_mask=masks)["map"]
    for b, name in enumerate(sf.CROWD_BINS):
      chosen = [im for im in images if im["crowd_bin"] == b]
      if chosen:
        report["by_crowd"][name] = self._ap("persons", images=chosen)["map"]
    if all("ceiling" in im for im in images):
      report["ceiling_map"] = self._ap("ceiling", images=images)["map"]
    return report

  def result(self) -> dict[str, float]:
    """{prefix + 'map', 'count_accuracy', 'map_<bin>', 'ceiling_map'}: finite scalars."""
    r = self.report()
    scalars = {"map": r["map"], "count_accuracy": r["count_accuracy"],
               **{f"map_{k}": v for k, v in {**r["by_occlusion"], **r["by_crowd"]}.items()}}
    if "ceiling_map" in r:
      scalars["ceiling_map"] = r["ceiling_map"]
    return {self.prefix + k: float(v) for k, v in scalars.items() if np.isfinite(v)}


def _interleave(shares: list[list[Any]]) -> list[Any]:
  """One list from every process's share: process i of n reads examples i,
  i + n, i + 2n... of a split (`data.pipeline`), so this is one process's
  order, which the AP's tie-breaking follows."""
  longest = max((len(share) for share in shares), default=0)
  return [share[j] for j in range(longest) for share in shares if j < len(share)]


def _to_original(persons: np.ndarray, affine: np.ndarray) -> np.ndarray:
  persons = np.asarray(persons, np.float64).reshape(-1, kp.NUM_JOINTS, 3)
  xy = transforms.to_original(persons[..., :2], affine)
  return np.concatenate([xy, persons[..., 2:]], axis=-1)


def predict_scene(outputs: dict[str, Any], batch: common.Batch, *, image_size: int,
                  options: grouping.GroupingOptions) -> dict[str, Any]:
  """Persons and the grouping ceiling from last-stack maps of a scene batch."""
  maps, tags = np.asarray(outputs["heatmaps"]), np.asarray(outputs["tags"])
  persons = grouping.predict_persons(maps, tags, image_size=image_size, options=options)
  ceiling = []
  for i in range(len(maps)):
    real = np.asarray(batch["persons_valid"][i], bool)
    ceiling.append(grouping.group_ground_truth(
        np.asarray(batch["joints"][i])[real], np.asarray(batch["joints_visible"][i])[real],
        tags[i], image_size=image_size, options=options))
  return {"persons": persons, "ceiling": ceiling}


def create_evaluator(config: ml_collections.ConfigDict, eval_fn, mesh) -> Evaluator:
  """The evaluator training runs for a model of several people: the loss and
  `MultiPersonAp` on `config.eval_batches` validation batches."""
  options = grouping.GroupingOptions.from_config(config)

  def predict(state, batch):
    out = eval_fn(state, parallel.shard_batch(batch, mesh), None)
    local = jax.tree.map(lambda v: parallel.local_part(v, mesh),
                         {k: out[k] for k in ("heatmaps", "tags")})
    return {"loss_sum": jax.device_get(out["loss_sum"]), "count": jax.device_get(out["count"]),
            **predict_scene(local, batch, image_size=config.input.image_size, options=options)}

  def batches():
    return data.create_iterator(config.input, split=config.input.eval_split,
                                batch_size=config.input.eval_batch_size, seed=config.seed,
                                shuffle=False, repeat=False)

  return Evaluator(predict, batches, lambda: [Loss(), MultiPersonAp(prefix="mp_")],
                   num_batches=config.eval_batches)


def single_person_baseline(joint_fn, variables, batches, *, size: int) -> dict[str, Any]:
  """`MultiPersonAp.report()` of a single-person joint model run on the crop
  of every ground-truth box (`top_down.joints_on_boxes`) of scene batches.

  Args:
    joint_fn, variables: as `top_down.joints_on_boxes`.
    batches: scene batches (boxes in the pixels of their images).
    size: the joint model's input size.
  """
  metric = MultiPersonAp()
  for batch in batches:
    persons = []
    for i in range(len(batch["image"])):
      real = np.asarray(batch["persons_valid"][i], bool)
      persons.append(top_down.joints_on_boxes(joint_fn, variables, np.asarray(batch["image"][i]),
                                              np.asarray(batch["boxes"][i])[real], size=size))
    metric.update(batch, {"persons": persons})
  return metric.report()
