"""Evaluators: a predict function, a data source and the metrics they feed.

`Evaluator` (common.py) runs one pass over the data and yields named metrics;
`Pckh` (pckh.py) is the one PCKh computation of training and of
`launch.evaluate`; `Loss` and `Panel` (training.py) the rest of what training
reports. `metrics_for` builds the metrics a config lists.
"""

from __future__ import annotations

from typing import Sequence

from triplet_pose import keypoints as kp
from triplet_pose.evaluators.common import Evaluator
from triplet_pose.evaluators.common import Metric
from triplet_pose.evaluators.pckh import Pckh
from triplet_pose.evaluators.training import Loss
from triplet_pose.evaluators.training import Panel

METRICS = ("loss", "pckh", "panel")

__all__ = ["Evaluator", "Loss", "METRICS", "Metric", "Panel", "Pckh", "metrics_for"]


def metrics_for(names: Sequence[str], keypoint_sets: Sequence[kp.KeypointSet]
                ) -> list[Metric]:
  """Fresh metrics `names` (of `METRICS`) for a model predicting `keypoint_sets`.

  The first set's results are named plainly (`pckh_Mean`, `panel`); the
  others' carry the set's name (`contour_pckh_Mean`, `contour_panel`).

  Raises:
    ValueError: for an unknown metric name.
  """
  unknown = sorted(set(names) - set(METRICS))
  if unknown:
    raise ValueError(f"unknown evaluation metrics {unknown} in config.eval_metrics; "
                     f"known: {', '.join(METRICS)}")
  result: list[Metric] = [Loss()] if "loss" in names else []
  for i, kset in enumerate(keypoint_sets):
    prefix = "" if i == 0 else f"{kset.name}_"
    if "pckh" in names:
      result.append(Pckh(kset, prefix=prefix + "pckh_"))
    if "panel" in names:
      result.append(Panel(kset, name=prefix + "panel"))
  return result
