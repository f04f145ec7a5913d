"""PCKh, the MPII pose metric, for the 16 joints and the 26 contour points.

A keypoint is correct at threshold t when its distance to the ground truth is
at most t head sizes (MPII protocol: `dist / head_size <= t`). Only annotated
keypoints count: `visible` says which ones were annotated, occluded or not.

* Per keypoint: correct / annotated over the persons.
* Per group (Head, Shoulder, ... for joints; Neck, Shoulder, ... for the
  contour points, grouped by parent joint): the mean of the group's per
  keypoint values, as the MPII tables average the left and right joint.
* Mean: correct / annotated pooled over the benchmark's 14 joints (pelvis and
  thorax excluded), which equals the annotation-count-weighted mean of the
  per-joint values; for the contour, pooled over all 26 points.
* The PCKh-vs-threshold curve and its normalised area (AUC).

Everything is host-side numpy (metrics are sums divided on the host); jax
arrays are accepted.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from triplet_pose import keypoints as kp

DEFAULT_CURVE_THRESHOLDS = tuple(np.round(np.linspace(0.0, 0.5, 51), 4))


def keypoint_set_of(num_keypoints: int) -> kp.KeypointSet:
  """The keypoint set (joints or contour) that has `num_keypoints` keypoints.

  Raises:
    ValueError: for any other number of keypoints.
  """
  for kset in kp.KEYPOINT_SETS.values():
    if kset.size == num_keypoints:
      return kset
  raise ValueError(f"PCKh groups exist for {kp.NUM_JOINTS} joints or "
                   f"{kp.NUM_CONTOUR} contour points, got {num_keypoints} keypoints")


def normalized_distances(pred, gt, visible, head_size) -> tuple[np.ndarray, np.ndarray]:
  """Distances in head sizes, and the mask of keypoints that count.

  Args:
    pred: (persons, K, 2) predicted (x, y).
    gt: (persons, K, 2) ground truth, in the same pixels as `pred`.
    visible: (persons, K) nonzero where the keypoint is annotated.
    head_size: (persons,) PCKh normaliser in the same pixels.

  Returns:
    distances: (persons, K) float64, distance / head size (NaN where not counted).
    counted: (persons, K) bool.

  Raises:
    ValueError: on mismatched shapes, or a non-positive head size of a person
      with annotated keypoints.
  """
  pred = np.asarray(pred, np.float64)
  gt = np.asarray(gt, np.float64)
  visible = np.asarray(visible)
  head_size = np.asarray(head_size, np.float64)
  if pred.ndim != 3 or pred.shape[-1] != 2 or gt.shape != pred.shape:
    raise ValueError(f"pred and gt must both be (persons, keypoints, 2), got "
                     f"pred {pred.shape} and gt {gt.shape}")
  if visible.shape != pred.shape[:2]:
    raise ValueError(f"visible must be (persons, keypoints) = {pred.shape[:2]}, "
                     f"got {visible.shape}")
  if head_size.shape != pred.shape[:1]:
    raise ValueError(f"head_size must be (persons,) = {pred.shape[:1]}, got "
                     f"{head_size.shape}")
  counted = visible.astype(bool)
  bad = counted.any(axis=1) & ~(head_size > 0)
  if bad.any():
    raise ValueError(f"head_size must be > 0 for persons with annotated keypoints; "
                     f"persons {np.flatnonzero(bad)[:10].tolist()} have "
                     f"{head_size[bad][:10].tolist()}")
  safe = np.where(head_size > 0, head_size, 1.0)
  dist = np.linalg.norm(pred - gt, axis=-1) / safe[:, None]
  # A non-finite prediction of an annotated keypoint is simply wrong.
  dist = np.where(np.isfinite(dist), dist, np.inf)
  return np.where(counted, dist, np.nan), counted


def pckh_per_keypoint(pred, gt, visible, head_size, threshold: float = 0.5
                      ) -> tuple[np.ndarray, np.ndarray]:
  """Per-keypoint PCKh (K,) (NaN where nothing is annotated) and counts (K,)."""
  dist, counted = normalized_distances(pred, gt, visible, head_size)
  return _per_keypoint(dist, counted, threshold)


def _per_keypoint(dist, counted, threshold):
  correct = (counted & (np.nan_to_num(dist, nan=np.inf) <= threshold)).sum(axis=0)
  count = counted.sum(axis=0)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(count > 0, correct / np.maximum(count, 1), np.nan), count


def _summarise(dist, counted, threshold) -> dict[str, float]:
  kset = keypoint_set_of(dist.shape[1])
  groups, mean_keypoints = kset.pckh_groups, kset.pckh_mean
  per_kp, count = _per_keypoint(dist, counted, threshold)
  result = {}
  for name, members in groups.items():
    values = per_kp[list(members)]
    values = values[np.isfinite(values)]
    result[name] = float(values.mean()) if values.size else float("nan")
  members = list(mean_keypoints)
  total = count[members].sum()
  correct = np.nansum(per_kp[members] * count[members])
  result["Mean"] = float(correct / total) if total else float("nan")
  return result


def pckh(pred, gt, visible, head_size, threshold: float = 0.5) -> dict[str, float]:
  """PCKh@threshold per group and `Mean`, as fractions in [0, 1].

  Args:
    pred: (persons, K, 2) predicted (x, y); K is 16 (joints) or 26 (contour).
    gt: (persons, K, 2) ground truth.
    visible: (persons, K) nonzero where annotated; others are ignored.
    head_size: (persons,) head size in the pixels of `pred` and `gt`.
    threshold: in head sizes; a keypoint exactly at the threshold is correct.

  Returns:
    {group: fraction} for every group of the K keypoints' set, plus `Mean`. A group
    with no annotated keypoint is NaN.
  """
  dist, counted = normalized_distances(pred, gt, visible, head_size)
  return _summarise(dist, counted, threshold)


def pckh_curve(pred, gt, visible, head_size,
               thresholds: Sequence[float] = DEFAULT_CURVE_THRESHOLDS
               ) -> dict[str, np.ndarray]:
  """PCKh of every group and `Mean` at each threshold.

  Returns:
    {'threshold': (T,), group: (T,), ..., 'Mean': (T,)}.
  """
  dist, counted = normalized_distances(pred, gt, visible, head_size)
  return _curve(dist, counted, thresholds)


def _curve(dist, counted, thresholds):
  rows = [_summarise(dist, counted, t) for t in thresholds]
  curve = {"threshold": np.asarray(thresholds, np.float64)}
  for name in rows[0]:
    curve[name] = np.asarray([r[name] for r in rows])
  return curve


def auc(thresholds: Sequence[float], values: Sequence[float]) -> float:
  """Area under a PCKh curve divided by the threshold range (1 = perfect).

  Raises:
    ValueError: for fewer than two thresholds or a zero range.
  """
  t = np.asarray(thresholds, np.float64)
  v = np.asarray(values, np.float64)
  if t.ndim != 1 or t.size < 2 or t[-1] == t[0] or v.shape != t.shape:
    raise ValueError(f"auc needs >= 2 increasing thresholds and as many values, "
                     f"got thresholds {t.shape} and values {v.shape}")
  return float(np.trapezoid(v, t) / (t[-1] - t[0]))


def mean16(dist: np.ndarray, counted: np.ndarray, threshold: float = 0.5) -> float:
  """PCKh pooled over all 16 joints with a strict `dist < threshold`.

  The figure princeton-vl's `mpii_eval` prints (and its README quotes for
  its checkpoints, 0.902 and 0.883), which counts pelvis and thorax too.
  Arguments as returned by `normalized_distances`.
  """
  correct = (counted & (np.nan_to_num(dist, nan=np.inf) < threshold)).sum()
  total = counted.sum()
  return float(correct / total) if total else float("nan")


def pckh_report(pred, gt, visible, head_size, *, threshold: float = 0.5,
                thresholds: Sequence[float] = DEFAULT_CURVE_THRESHOLDS
                ) -> dict:
  """Everything a results table needs, JSON-serialisable.

  Returns:
    {'groups': {group: PCKh@threshold, ..., 'Mean': ...}, 'Mean@0.1': float,
     'AUC': float (of the Mean curve over `thresholds`),
     'Mean16': float (joints only; `mean16`),
     'per_keypoint': {name: PCKh@threshold}, 'counts': {name: annotated},
     'curve': {'threshold': [...], group: [...], 'Mean': [...]},
     'persons': int, 'threshold': float}.
  """
  dist, counted = normalized_distances(pred, gt, visible, head_size)
  kset = keypoint_set_of(dist.shape[1])
  names = kset.names
  per_kp, count = _per_keypoint(dist, counted, threshold)
  curve = _curve(dist, counted, thresholds)
  extra = {}
  if kset is kp.JOINTS:
    extra["Mean16"] = mean16(dist, counted, threshold)
  return {
      **extra,
      "threshold": float(threshold),
      "persons": int(dist.shape[0]),
      "groups": _summarise(dist, counted, threshold),
      "Mean@0.1": _summarise(dist, counted, 0.1)["Mean"],
      "AUC": auc(curve["threshold"], curve["Mean"]),
      "per_keypoint": {n: float(v) for n, v in zip(names, per_kp)},
      "counts": {n: int(c) for n, c in zip(names, count)},
      "curve": {k: [float(x) for x in v] for k, v in curve.items()},
  }


# --------------------------------------------------------------------------
# Several people per image: the MPII multi-person protocol.


def _image_detections(pred, keypoints, visible, head_size, threshold, where: str):
  """One image's predicted persons matched to its ground truth.

  Returns:
    owner: (P,) ground-truth index each prediction took, or -1.
    tp: (P, K) bool, the joint is a true positive.
    scores: (P, K) float64.
    detected: (P, K) bool, the joint is a detection (finite x, y, score).
  """
  pred = np.asarray(pred, np.float64)
  keypoints = np.asarray(keypoints, np.float64)
  visible = np.asarray(visible).astype(bool)
  head_size = np.asarray(head_size, np.float64)
  k = keypoints.shape[1] if keypoints.ndim == 3 else (pred.shape[1] if pred.ndim == 3 else 0)
  if pred.size == 0:  # no person predicted, in any shape
    pred = np.zeros((0, k, 3))
  if pred.ndim != 3 or pred.shape[-1] != 3 or (pred.shape[0] and pred.shape[1] != k):
    raise ValueError(f"{where}: predictions must be (P, {k}, 3) x, y, score; got {pred.shape}")
  g = keypoints.shape[0]
  if (keypoints.ndim != 3 or keypoints.shape[-1] != 2 or visible.shape != keypoints.shape[:2]
      or head_size.shape != (g,)):
    raise ValueError(f"{where}: ground truth must be keypoints (G, K, 2), visible (G, K) and "
                     f"head sizes (G,); got {keypoints.shape}, {visible.shape}, {head_size.shape}")
  if (visible.any(axis=1) & ~(head_size > 0)).any():
    raise ValueError(f"{where}: a person with visible joints has head size <= 0 ({head_size})")
  p = pred.shape[0]
  detected = np.isfinite(pred).all(axis=-1)
  safe = np.where(head_size > 0, head_size, 1.0)
  dist = np.linalg.norm(pred[:, None, :, :2] - keypoints[None], axis=-1) / safe[None, :, None]
  close = visible[None] & detected[:, None] & (np.nan_to_num(dist, nan=np.inf) <= threshold)
  match = close.sum(axis=-1)  # (P, G)
  # Highest mean score (of the person's detections) first; a stable sort
  # leaves ties in index order.
  count = detected.sum(axis=1)
  mean_score = np.where(count > 0, np.where(detected, pred[..., 2], 0.0).sum(axis=1)
                        / np.maximum(count, 1), -np.inf)
  owner = np.full(p, -1)
  free = np.ones(g, bool)
  for i in np.argsort(-mean_score, kind="stable"):
    if not free.any():
      break
    candidates = np.where(free, match[i], -1)
    best = int(np.argmax(candidates))  # the first of equal maxima: the lowest index
    if candidates[best] > 0:
      owner[i], free[best] = best, False
  tp = np.zeros((p, k), bool)
  taken = owner >= 0
  tp[taken] = close[np.flatnonzero(taken), owner[taken]]
  return owner, tp, pred[..., 2], detected


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
  """VOC all-points average precision (MPII's `VOCap`): the precision envelope
  summed over the steps of recall, as a fraction."""
  mrec = np.concatenate([[0.0], recall, [1.0]])
  mpre = np.concatenate([[0.0], precision, [0.0]])
  mpre = np.maximum.accumulate(mpre[::-1])[::-1]
  steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
  return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))


def _average_precision(scores, tp, positives) -> float:
  if positives == 0:
    return float("nan")
  order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
  hits = np.asarray(tp, bool)[order]
  tps, fps = np.cumsum(hits), np.cumsum(~hits)
  return voc_ap(tps / positives, tps / np.maximum(tps + fps, 1))


def multi_person_ap(predictions, ground_truth, threshold: float = 0.5, *,
                    person_mask=None) -> dict:
  """Per-joint average precision of several people per image (MPII protocol).

  Per image, `match[p, g]` counts the visible joints of ground-truth person g
  within `threshold * head_size[g]` of prediction p's joint. Predictions, by
  mean joint score (highest first, ties by index), each take the free
  ground-truth person with the largest match (ties: the lowest index) when it
  is > 0. Every predicted joint with finite x, y and score is a detection:
  a true positive when its person is matched, the ground-truth joint is
  visible and within the threshold, else a false positive. The positives of
  joint k are all visible ground-truth joints k. AP is VOC all-points AP of
  the detections sorted by score (ties in image, then person order).

  Args:
    predictions: per image, (P, K, 3) x, y, score (P may be 0).
    ground_truth: per image, (keypoints (G, K, 2), visible (G, K) bool,
      head sizes (G,)), in the pixels of the predictions.
    threshold: in head sizes.
    person_mask: optional, per image, (G,) bool: the ground-truth persons
      scored (a bin). Others still take part in the matching, but the
      predictions they take and their joints are left out, and so are
      unmatched predictions (false persons are scored by the full AP).

  Returns:
    {'ap': (K,) AP per joint in percent (NaN without positives), 'map': the
    mean AP of the joints with positives, over the 14 benchmark joints when
    K is 16 (pelvis and thorax left out, as PCKh `Mean`), else all K}.

  Raises:
    ValueError: on a different number of images or badly shaped arrays,
      naming the image.
  """
  predictions, ground_truth = list(predictions), list(ground_truth)
  if len(predictions) != len(ground_truth):
    raise ValueError(f"multi_person_ap: {len(predictions)} images of predictions but "
                     f"{len(ground_truth)} of ground truth")
  if person_mask is not None and len(person_mask) != len(ground_truth):
    raise ValueError(f"multi_person_ap: person_mask covers {len(person_mask)} images, "
                     f"not {len(ground_truth)}")
  scores, hits, positives, k = [], [], 0, None
  for i, (pred, (keypoints, visible, head)) in enumerate(zip(predictions, ground_truth)):
    owner, tp, score, detected = _image_detections(pred, keypoints, visible, head, threshold,
                                                   where=f"image {i}")
    if k is not None and tp.shape[1] != k:
      raise ValueError(f"image {i}: {tp.shape[1]} keypoints, earlier images {k}")
    k = tp.shape[1]
    visible = np.asarray(visible).astype(bool)
    keep = detected
    if person_mask is not None:
      scored = np.asarray(person_mask[i], bool)
      visible = visible & scored[:, None]
      taken = np.zeros(owner.shape, bool)  # the prediction took a scored person
      taken[owner >= 0] = scored[owner[owner >= 0]]
      keep = keep & taken[:, None]
    positives = positives + visible.sum(axis=0)
    scores.append(np.where(keep, score, np.nan))
    hits.append(tp & keep)
  if k is None:
    raise ValueError("multi_person_ap: no image given")
  scores = np.concatenate(scores) if scores else np.zeros((0, k))
  hits = np.concatenate(hits) if hits else np.zeros((0, k), bool)
  ap = np.array([_average_precision(scores[np.isfinite(scores[:, j]), j],
                                    hits[np.isfinite(scores[:, j]), j],
                                    int(np.broadcast_to(positives, (k,))[j]))
                 for j in range(k)]) * 100.0
  members = list(kp.JOINTS.pckh_mean) if k == kp.NUM_JOINTS else list(range(k))
  chosen = ap[members][np.isfinite(ap[members])]
  return {"ap": ap, "map": float(chosen.mean()) if chosen.size else float("nan")}


def person_count_accuracy(predicted, true) -> float:
  """Fraction of images whose number of predicted persons is the true one."""
  predicted, true = np.asarray(predicted), np.asarray(true)
  if predicted.shape != true.shape or predicted.ndim != 1:
    raise ValueError(f"person counts must be two (images,) arrays, got {predicted.shape} "
                     f"and {true.shape}")
  return float(np.mean(predicted == true)) if true.size else float("nan")
