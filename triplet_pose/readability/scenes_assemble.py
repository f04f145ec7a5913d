"""The scenes' cells: AP with bootstrap CIs, person count and occlusion bins.

A run keeps each reader's persons of every test scene (runs of
`scenes_runs.json`); a cell (representation x N) gathers its seeds' runs:

* `map`: the multi-person mAP@0.5 (`metrics.multi_person_ap`, MPII's
  protocol), mean over seeds, 95% CI by the two-level bootstrap of
  `stats.statistic_summary` (seeds and test scenes resampled; the AP is
  recomputed on every resample since it ranks the detections of all scenes
  together);
* `count_accuracy`: share of test scenes whose number of persons found is
  the true one (fractions), mean and CI by `stats.summary`;
* `by_occlusion`: mAP of the persons of each occlusion bin
  (`MultiPersonAp`: unoccluded, partly, heavily hidden), mean and per seed;
  `by_crowd` the same per crowd-index bin.

`ceiling` scores perfect maps (every person's target heatmaps, tags by
person) through the reader's decoding and grouping at its heatmap size:
what a reader that makes no mistake reaches.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax.numpy as jnp
import ml_collections
import numpy as np

from triplet_pose import heatmaps as hm
from triplet_pose import metrics
from triplet_pose.data import scene_features as sf
from triplet_pose.evaluators import multi_person
from triplet_pose.readability import scenes_data
from triplet_pose.readability import scenes_reader
from triplet_pose.readability import stats

TAG_SPACING = 3.0  # perfect tags: person i's joints have tag 3 i (beyond the grouping's reach)


def run_key(name: str, n: int, layout: int, seed: int) -> str:
  return f"ideal/L{layout}/{name}/{n}/s{seed}"


def to_json(persons: list[np.ndarray]) -> list[list]:
  """Per-scene persons (P, 16, 3) as lists (2 decimals; None for NaN)."""
  return [[[[None if not np.isfinite(v) else round(float(v), 2) for v in joint]
            for joint in person] for person in scene] for scene in persons]


def from_json(persons: list[list]) -> list[np.ndarray]:
  return [np.asarray(scene, np.float64).reshape(-1, 16, 3) for scene in persons]


def _truth(split: Mapping[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """Per scene (joints, visible, head size) of its real persons."""
  return [(j[ok], v[ok] > 0, h[ok]) for j, v, h, ok in zip(
      split["joints"], split["joints_visible"], split["head_size"], split["persons_valid"])]


def report(persons: list[np.ndarray], split: Mapping[str, np.ndarray]) -> dict[str, Any]:
  """`MultiPersonAp.report()` of one reader's persons on the test scenes."""
  metric = multi_person.MultiPersonAp()
  metric.update(scenes_data.scoring_batch(split), {"persons": persons})
  return metric.report()


def _mean_bins(reports: list[dict[str, Any]], key: str) -> dict[str, Any]:
  names = list(dict.fromkeys(b for r in reports for b in r[key]))
  return {b: {"mean": float(np.nanmean([r[key].get(b, np.nan) for r in reports])),
              "per_seed": [float(r[key].get(b, np.nan)) for r in reports]} for b in names}


def cell(runs: list[Mapping[str, Any]], split: Mapping[str, np.ndarray], *,
         samples: int) -> dict[str, Any]:
  """A cell's statistics from its seeds' runs (each with 'persons').

  Returns:
    {'map': {'mean', 'ci95', 'per_seed'} in percent, 'count_accuracy':
    the same in fractions, 'by_occlusion' / 'by_crowd': {bin: {'mean',
    'per_seed'}}, 'persons_by_occlusion': {bin: persons}, 'seeds',
    'scenes', 'persons', 'seconds'}.
  """
  found = [from_json(r["persons"]) for r in runs]
  truth = _truth(split)
  count = np.asarray(split["num_persons"])

  def map_of(seed: int, scenes: np.ndarray) -> float:
    chosen = metrics.multi_person_ap([found[seed][i] for i in scenes],
                                     [truth[i] for i in scenes])["map"]
    return float(np.nan_to_num(chosen, nan=0.0))

  reports = [report(f, split) for f in found]
  right = np.array([[len(p) == c for p, c in zip(f, count)] for f in found], np.float64)
  counted = stats.summary(right, samples=samples)
  bins = _occlusion_bins(split)
  return {
      "map": stats.statistic_summary(map_of, seeds=len(found), figures=len(truth),
                                     samples=samples),
      "count_accuracy": {"mean": counted["mean"] / 100,
                         "ci95": [v / 100 for v in counted["ci95"]],
                         "per_seed": [v / 100 for v in counted["per_seed"]]},
      "by_occlusion": _mean_bins(reports, "by_occlusion"),
      "by_crowd": _mean_bins(reports, "by_crowd"),
      "persons_by_occlusion": {name: int(np.sum(bins == b)) for b, name in
                               enumerate(sf.OCCLUSION_BINS)},
      "grouping": [r.get("grouping") for r in runs],
      "seeds": len(found), "scenes": len(truth), "persons": reports[0]["persons"],
      "seconds": float(sum(r.get("seconds", 0.0) for r in runs)),
  }


def _occlusion_bins(split: Mapping[str, np.ndarray]) -> np.ndarray:
  real = np.asarray(split["persons_valid"], bool)
  fraction = sf.occlusion_fraction(split["joints_occlusion"], split["joints_visible"])
  return sf.occlusion_bin(fraction)[real]


def perfect_maps(split: Mapping[str, np.ndarray], *, heatmap_size: int, sigma: float,
                 source_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Every person's target heatmaps (maximum over persons) and perfect tags.

  The tag of a cell is `TAG_SPACING` x the index of the person whose target
  is largest there, so grouping by tags can only follow the persons.
  """
  coords = np.asarray(hm.rescale_coordinates(
      jnp.asarray(split["joints"]), source_size, heatmap_size))
  weight = np.asarray(split["joints_visible"]) * np.asarray(split["persons_valid"])[..., None]
  each = np.asarray(hm.render(jnp.asarray(coords), jnp.asarray(weight),
                                       height=heatmap_size, sigma=sigma))  # (B, P, h, w, K)
  return each.max(axis=1), TAG_SPACING * each.argmax(axis=1).astype(np.float32)


def ceiling(split: Mapping[str, np.ndarray], *, config: ml_collections.ConfigDict,
            source_size: int) -> dict[str, Any]:
  """mAP, count accuracy and bins of perfect maps at the reader's heatmap size."""
  reader = config.observer
  found = perfect_maps(split, heatmap_size=reader.image_size // 4, sigma=reader.heatmap.sigma,
                       source_size=source_size)
  out = report(scenes_reader.persons(found, source_size=source_size,
                                     grouping_options=scenes_reader.options(reader)), split)
  return {"heatmap_size": reader.image_size // 4, "map": out["map"],
          "count_accuracy": out["count_accuracy"], "by_occlusion": out["by_occlusion"]}
