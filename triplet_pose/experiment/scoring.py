"""Scores of click trials with the project's PCKh, the observer's metric.

A click trial asks for the head, both hands and both feet
(`design.CLICK_TARGETS`) on the phosphene image. A click is correct when it
lies within 0.5 head sizes of its target (`metrics.normalized_distances`,
the MPII protocol). A figure may face either way, so within each pair of
hands and of feet the better labelling counts (`design.CLICK_SWAPS`), as
the choice rule leaves left and right free (`readability.choice`).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from triplet_pose import metrics
from triplet_pose.experiment import design


def best_labelling(clicks, points) -> np.ndarray:
  """`clicks` (5, 2) with each swappable pair in the order nearer to `points`."""
  clicks = np.array(clicks, np.float64)
  points = np.asarray(points, np.float64)
  for a, b in design.CLICK_SWAPS:
    kept = np.linalg.norm(clicks[[a, b]] - points[[a, b]], axis=-1).sum()
    swapped = np.linalg.norm(clicks[[b, a]] - points[[a, b]], axis=-1).sum()
    if swapped < kept:
      clicks[[a, b]] = clicks[[b, a]]
  return clicks


def click_distances(item: dict[str, Any], clicks: Sequence[Sequence[float]]) -> np.ndarray:
  """(5,) distances of the clicks to their targets, in head sizes."""
  points = np.asarray(item["points"], np.float64)
  labelled = best_labelling(clicks, points)
  dist, _ = metrics.normalized_distances(labelled[None], points[None],
                                         np.ones((1, len(points))),
                                         np.asarray([item["head_size"]]))
  return dist[0]


def click_pckh(item: dict[str, Any], clicks, threshold: float = 0.5) -> float:
  """Fraction of the 5 targets clicked within `threshold` head sizes."""
  return float(np.mean(click_distances(item, clicks) <= threshold))
