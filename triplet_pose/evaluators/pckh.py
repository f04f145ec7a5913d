"""PCKh of one keypoint set in original image pixels, as a metric.

Predictions and ground truth are mapped back through each example's
`crop_to_original`, and the head size scaled with it, so the figure is the
MPII protocol's whatever crop or augmentation produced the batch. Padded
examples (`valid` 0) are left out; on several hosts the rows of every
process are gathered first.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from triplet_pose import keypoints as kp
from triplet_pose import metrics
from triplet_pose import transforms
from triplet_pose.evaluators import common


class Pckh:
  """Accumulates one keypoint set's predictions; reports PCKh.

  Args:
    keypoint_set: the set scored (`keypoints.JOINTS` or `CONTOUR`).
    prefix: prepended to the scalar names of `result()`.
    thresholds: of the PCKh curve and its AUC.
  """

  def __init__(self, keypoint_set: kp.KeypointSet, *, prefix: str = "pckh_",
               thresholds: Sequence[float] = metrics.DEFAULT_CURVE_THRESHOLDS):
    self.keypoint_set = keypoint_set
    self.prefix = prefix
    self.thresholds = thresholds
    self._rows = {k: [] for k in ("pred", "gt", "visible", "head", "valid",
                                  "pred_crop", "gt_crop")}
    self._gathered: dict[str, np.ndarray] | None = None  # `arrays()`, once

  def update(self, batch: common.Batch, predictions: dict[str, Any]) -> None:
    kset = self.keypoint_set
    affine = np.asarray(batch["crop_to_original"], np.float64)
    pred = np.asarray(predictions["keypoints"][kset.name])
    gt = np.asarray(batch[kset.name])
    rows = {"pred": transforms.to_original(pred, affine),
            "gt": transforms.to_original(gt, affine),
            "visible": np.asarray(batch[kset.visible_key]),
            "head": np.asarray(batch["head_size"]) * transforms.crop_scale(affine),
            "valid": np.asarray(batch["valid"], bool),
            "pred_crop": pred, "gt_crop": gt}
    for key, value in rows.items():
      self._rows[key].append(value)
    self._gathered = None

  def arrays(self) -> dict[str, np.ndarray]:
    """Every valid person's rows: pred, gt (original px), visible, head,
    pred_crop, gt_crop (crop px), over the whole split.

    Raises:
      ValueError: when no valid example was seen.
    """
    if self._gathered is not None:
      return self._gathered
    gathered = {k: common.gather_rows(v) for k, v in self._rows.items() if v}
    if not gathered or not gathered["valid"].any():
      raise ValueError("no valid example was evaluated (an empty split?)")
    valid = gathered.pop("valid")
    self._gathered = {k: v[valid] for k, v in gathered.items()}
    return self._gathered

  def report(self) -> dict[str, Any]:
    """`metrics.pckh_report` of everything seen (groups, @0.1, AUC, curve...)."""
    a = self.arrays()
    return metrics.pckh_report(a["pred"], a["gt"], a["visible"], a["head"],
                               thresholds=self.thresholds)

  def result(self) -> dict[str, float]:
    """{prefix + group: PCKh@0.5, prefix + 'Mean@0.1': ...}, finite values only."""
    report = self.report()
    scalars = {**report["groups"], "Mean@0.1": report["Mean@0.1"]}
    return {self.prefix + k: float(v) for k, v in scalars.items() if np.isfinite(v)}
