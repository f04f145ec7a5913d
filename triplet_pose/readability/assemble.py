"""From every reader's per-figure scores to results.json's cells and comparisons.

`runs` (runs.json) holds, per reader (`benchmark.run_key`: protocol,
layout, representation, N, seed), its per-figure PCKh on the validation
figures from the true and the predicted pose, and (first layout) the ideal
reader's scores at the other phosphene counts (`transfer`) and the common
reader's within the median budget (`equal_budget`).

* `assemble(results, runs, config)`: fills results['cells'] (a list: one
  per protocol x pose x representation x N, the names other tools read),
  results['comparisons'] (a paired test for every pair of representations
  at each N and protocol, and for each representation between
  neighbouring N) and results['units'].
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping

import numpy as np

from triplet_pose.readability import representations as reps
from triplet_pose.readability import stats

PROTOCOLS = ("ideal", "common")
POSES = ("true", "predicted")


def run_key(protocol: str, name: str, n: int, layout: int, seed: int) -> str:
  """The key of one reader's scores in runs.json."""
  return f"{protocol}/L{layout}/{name}/{n}/s{seed}"


def _scores(runs, protocol, name, n, layout, seeds, field="true") -> np.ndarray | None:
  """(seeds, figures) of the seeds that ran (None when none did, or one lacks `field`)."""
  have = [runs[k] for k in (run_key(protocol, name, n, layout, s) for s in seeds) if k in runs]
  if not have or any(r.get(field) is None for r in have):
    return None
  return np.asarray([r[field] for r in have], np.float64)


def _condition(results, name, n, layout, seeds) -> dict[str, Any]:
  """Budget and pictoriality of a condition (learned: the mean over its encoders)."""
  conditions = results.get("conditions", {})
  if reps.get(name).kind == "learned":
    records = [conditions[k] for k in (f"L{layout}/{name}/{n}/s{s}" for s in seeds)
               if k in conditions]
  else:
    records = [conditions[k] for k in (f"L{layout}/{name}/{n}",) if k in conditions]
  if not records:
    return {}
  mean = lambda get: float(np.mean([get(r) for r in records]))
  out = {"active_electrodes": mean(lambda r: r["budget"]["active_electrodes"]),
         "charge_per_frame": mean(lambda r: r["budget"]["charge_per_frame"]),
         "pictoriality": {k: mean(lambda r, k=k: r["pictoriality"][k]) for k in ("iou", "ssim")}}
  if all("ssim_predicted" in r for r in records):
    out["ssim_predicted_vs_true"] = mean(lambda r: r["ssim_predicted"])
  return out


def _cell(results, runs, config, protocol, pose, name, n) -> dict[str, Any] | None:
  first, seeds, samples = config.layouts[0], list(config.seeds), config.bootstrap
  scores = _scores(runs, protocol, name, n, first, seeds, pose)
  if scores is None:
    return None
  keys = [run_key(protocol, name, n, first, s) for s in seeds]
  cell = {"representation": name, "num_phosphenes": int(n), "protocol": protocol,
          "pose": pose, "pckh": stats.summary(scores, samples=samples),
          "seeds": [s for s, k in zip(seeds, keys) if k in runs],
          "figures": int(scores.shape[1]),
          **_condition(results, name, n, first, seeds),
          "seconds": float(sum(runs[k].get("seconds", 0.0) for k in keys if k in runs))}
  if reps.get(name).kind == "learned" and protocol == "common" and pose == "true":
    # The encoders were trained against the common readers: their time is here.
    cell["seconds"] += float(sum(runs.get(f"encoder/L{first}/{n}/s{s}", {}).get("seconds", 0.0)
                                 for s in seeds))
  have = [runs[k] for k in keys if k in runs]
  if pose == "true" and protocol == "ideal" and all("transfer" in r for r in have):
    cell["transfer"] = {str(o): stats.summary([r["transfer"][str(o)] for r in have],
                                              samples=samples)
                        for o in sorted(config.num_phosphenes) if o != n}
  if pose == "true" and protocol == "common":
    capped = _scores(runs, protocol, name, n, first, seeds, "equal_budget")
    if capped is not None:
      cell["pckh_equal_budget"] = stats.summary(capped, samples=samples)
  if pose == "true":
    others = {}
    for layout in config.layouts[1:]:
      other_seeds = seeds if protocol == "common" else list(config.second_layout_ideal_seeds)
      moved = _scores(runs, protocol, name, n, layout, other_seeds)
      if moved is not None:
        others[str(layout)] = stats.summary(moved, samples=samples)
    if others:
      cell["other_layouts"] = others
  return cell


def _comparisons(runs, config) -> list[dict[str, Any]]:
  """Paired tests: representation pairs at each N, neighbouring N per representation."""
  first, seeds, out = config.layouts[0], list(config.seeds), []
  counts = sorted(config.num_phosphenes)
  for protocol in PROTOCOLS:
    for n in counts:
      for a, b in itertools.combinations(config.representations, 2):
        sa, sb = (_scores(runs, protocol, x, n, first, seeds) for x in (a, b))
        if sa is None or sb is None or sa.shape != sb.shape:
          continue
        test = stats.paired(sa, sb, samples=config.bootstrap)
        out.append({"protocol": protocol, "num_phosphenes": int(n), "a": a, "b": b, **test,
                    "verdict": stats.ordering(a, b, test)})
    for name in config.representations:
      for lo, hi in zip(counts, counts[1:]):
        sa, sb = (_scores(runs, protocol, name, x, first, seeds) for x in (hi, lo))
        if sa is None or sb is None or sa.shape != sb.shape:
          continue
        test = stats.paired(sa, sb, samples=config.bootstrap)
        out.append({"protocol": protocol, "representation": name, "a": int(hi), "b": int(lo),
                    **test, "verdict": stats.ordering(f"N={hi}", f"N={lo}", test)})
  return out


def assemble(results: dict[str, Any], runs: Mapping[str, Any], config) -> dict[str, Any]:
  """Fills results' 'units', 'cells' and 'comparisons' from the runs (in place)."""
  cells = []
  for protocol, pose in itertools.product(PROTOCOLS, POSES):
    for name in config.representations:
      for n in sorted(config.num_phosphenes):
        cell = _cell(results, runs, config, protocol, pose, name, n)
        if cell is not None:
          cells.append(cell)
  results["units"] = dict(reps.UNITS)
  results["cells"] = cells
  results["comparisons"] = _comparisons(runs, config)
  return results
