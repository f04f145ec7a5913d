"""The metrics training reports besides PCKh: validation loss and a panel.

Both read what `train.eval_step` returns: `loss_sum` (S,) and `count` are
sums over the valid examples of the global batch; `keypoints` and
`heatmaps` are this process's rows of the last stack, keyed by keypoint set.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from triplet_pose import keypoints as kp
from triplet_pose import viz
from triplet_pose.evaluators import common


class Loss:
  """Validation loss (sum over stacks) and per stack, over valid examples."""

  def __init__(self):
    self._total, self._count = None, 0.0

  def update(self, batch: common.Batch, predictions: dict[str, Any]) -> None:
    del batch  # the sums are computed on device, over the global batch
    loss_sum = np.asarray(predictions["loss_sum"], np.float64)
    self._total = loss_sum if self._total is None else self._total + loss_sum
    self._count += float(predictions["count"])

  def result(self) -> dict[str, float]:
    per_stack = self._total / max(self._count, 1.0)
    return {"eval_loss": float(per_stack.sum()),
            **{f"eval_loss_stack_{s + 1}": float(v) for s, v in enumerate(per_stack)}}


class Panel:
  """The first valid examples' predicted keypoints and heatmaps, as an image.

  Args:
    keypoint_set: what is drawn (skeleton or triplet).
    name: the image's name in `result()`.
    max_examples: columns of the panel.
  """

  def __init__(self, keypoint_set: kp.KeypointSet, *, name: str = "panel",
               max_examples: int = 4):
    self.keypoint_set = keypoint_set
    self.name = name
    self.max_examples = max_examples
    self._examples: list[dict[str, np.ndarray]] = []

  def update(self, batch: common.Batch, predictions: dict[str, Any]) -> None:
    kset = self.keypoint_set
    for i in np.flatnonzero(np.asarray(batch["valid"], bool)):
      if len(self._examples) >= self.max_examples:
        return
      self._examples.append({
          "image": np.asarray(batch["image"][i]),
          "pred": np.asarray(predictions["keypoints"][kset.name][i]),
          "gt": np.asarray(batch[kset.name][i]),
          "gt_visible": np.asarray(batch[kset.visible_key][i]),
          "heatmaps": np.asarray(predictions["heatmaps"][kset.name][i])})

  def result(self) -> dict[str, np.ndarray]:
    if not self._examples:
      return {}
    e = {k: np.stack([x[k] for x in self._examples]) for k in self._examples[0]}
    return {self.name: viz.prediction_grid(
        e["image"], e["pred"], gt=e["gt"], gt_visible=e["gt_visible"],
        heatmaps=e["heatmaps"], max_examples=self.max_examples)}
