"""Statistics of the readability grid: per-figure scores, bootstrap CIs, paired tests.

A cell's score is a (seeds, figures) array: for every observer seed, the
PCKh of each held-out test figure (the fraction of its `Mean` keypoints
within half a head size; every keypoint of a synthetic figure is
annotated, so their mean over figures is the project's PCKh `Mean`).

* `per_figure_pckh`: the (figures,) scores of one reader's joints.
* `summary`: mean and 95% CI by bootstrap over seeds and test figures.
* `statistic_summary`: the same for a statistic of a whole test set (the
  multi-person AP of the scenes, `scenes.py`).
* `paired`: the difference of two cells scored on the same test figures,
  its bootstrap CI (seeds and figures resampled together) and a two-sided
  sign-flip permutation test across figures.
* `ordering`: the sentence a table may state: an ordering only where the
  CI of the difference excludes zero, else "no difference found".
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from triplet_pose import keypoints as kp
from triplet_pose import metrics

NO_DIFFERENCE = "no difference found"


def per_figure_pckh(joints: np.ndarray, truth: np.ndarray, head_size: np.ndarray, *,
                    threshold: float = 0.5) -> np.ndarray:
  """(figures,) fraction of the PCKh `Mean` joints read within `threshold` head sizes."""
  visible = np.ones(truth.shape[:2], np.float32)
  dist, _ = metrics.normalized_distances(joints, truth, visible, head_size)
  members = list(kp.JOINTS.pckh_mean)
  return (dist[:, members] <= threshold).mean(axis=1)


def _resampled_means(scores: np.ndarray, *, samples: int, seed: int) -> np.ndarray:
  """Means of `samples` bootstrap resamples of a (seeds, figures) array (or a stack).

  Seeds and figures are resampled independently (a two-level bootstrap);
  a leading axis of several arrays shares the indices (paired).
  """
  scores = np.asarray(scores, np.float64)
  out = np.empty(scores.shape[:-2] + (samples,))
  for b, (s, f) in enumerate(_draws(*scores.shape[-2:], samples=samples, seed=seed)):
    out[..., b] = scores[..., s, :][..., f].mean(axis=(-2, -1))
  return out


def _draws(seeds: int, figures: int, *, samples: int, seed: int):
  """The bootstrap's resamples: (seed indices, figure indices), drawn independently."""
  rng = np.random.default_rng(seed)
  for _ in range(samples):
    yield rng.integers(seeds, size=seeds), rng.integers(figures, size=figures)


def summary(scores, *, samples: int = 1000, seed: int = 0) -> dict[str, Any]:
  """Mean, 95% CI and per-seed means of a cell, in percent.

  Args:
    scores: (seeds, figures) per-figure PCKh fractions.
    samples: bootstrap resamples.
    seed: of the resampling (fixed: a re-run gives the same interval).

  Returns:
    {'mean', 'ci95': [lo, hi], 'per_seed': [...]} in percent.
  """
  scores = np.asarray(scores, np.float64)
  means = _resampled_means(scores, samples=samples, seed=seed)
  lo, hi = np.percentile(means, [2.5, 97.5])
  return {"mean": 100 * float(scores.mean()), "ci95": [100 * float(lo), 100 * float(hi)],
          "per_seed": [100 * float(v) for v in scores.mean(axis=1)]}


def statistic_summary(statistic: Callable[[int, np.ndarray], float], *, seeds: int,
                      figures: int, samples: int = 1000, seed: int = 0) -> dict[str, Any]:
  """Mean, 95% CI and per-seed values of a statistic of a whole test set.

  For scores that are not a mean over test figures (a multi-person AP ranks
  the detections of every figure together), with the same two-level
  bootstrap as `summary`: each resample draws seeds and figures, computes
  the statistic of every drawn seed on the drawn figures (repeats
  included) and averages over the drawn seeds.

  Args:
    statistic: (seed index, figure indices) -> value (in its own units).
    seeds, figures: how many of each the cell has.
    samples: bootstrap resamples.
    seed: of the resampling.

  Returns:
    {'mean', 'ci95': [lo, hi], 'per_seed': [...]}, in the statistic's units
    (the mean is over the per-seed values on all figures).
  """
  every = np.arange(figures)
  per_seed = [float(statistic(s, every)) for s in range(seeds)]
  means = np.empty(samples)
  for b, (drawn, f) in enumerate(_draws(seeds, figures, samples=samples, seed=seed)):
    values = {s: statistic(s, f) for s in np.unique(drawn)}
    means[b] = np.mean([values[s] for s in drawn])
  lo, hi = np.percentile(means, [2.5, 97.5])
  return {"mean": float(np.mean(per_seed)), "ci95": [float(lo), float(hi)],
          "per_seed": per_seed}


def paired(a, b, *, samples: int = 1000, permutations: int = 2000,
           seed: int = 0) -> dict[str, Any]:
  """A minus B on the same test figures: mean, 95% CI and permutation p.

  Args:
    a, b: (seeds, figures) scores of two cells on the same figures (the
      seeds are paired by index: the same observer seed).
    samples: bootstrap resamples of the CI (seeds and figures together).
    permutations: sign flips of the per-figure differences (the test
      across test figures).
    seed: of the resampling.

  Returns:
    {'difference', 'ci95': [lo, hi] (percentage points), 'p': two-sided
    permutation p-value, 'figures': int}.
  """
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape:
    raise ValueError(f"paired cells need the same seeds x figures, got {a.shape} and {b.shape}")
  means = _resampled_means(a - b, samples=samples, seed=seed)
  lo, hi = np.percentile(means, [2.5, 97.5])
  per_figure = (a - b).mean(axis=0)
  observed = abs(per_figure.mean())
  rng = np.random.default_rng(seed)
  signs = rng.choice((-1.0, 1.0), size=(permutations, per_figure.size))
  flipped = np.abs((signs * per_figure).mean(axis=1))
  p = (1 + np.sum(flipped >= observed - 1e-12)) / (permutations + 1)
  return {"difference": 100 * float(per_figure.mean()),
          "ci95": [100 * float(lo), 100 * float(hi)], "p": float(p),
          "figures": int(per_figure.size)}


def ordering(name_a: str, name_b: str, test: dict[str, Any]) -> str:
  """'A > B', 'A < B' where the CI of A - B excludes zero, else no difference."""
  lo, hi = test["ci95"]
  if lo > 0:
    return f"{name_a} > {name_b}"
  if hi < 0:
    return f"{name_a} < {name_b}"
  return NO_DIFFERENCE
