"""The scenes section of table.txt, from scenes_results.json (`scenes.py`).

* `format_scenes(results)`: mAP@0.5 per representation x N with its 95%
  bootstrap CI, the person-count accuracy with its CI, the mAP per
  occlusion bin (and the persons in each bin), the implant budget, the
  ceiling of perfect maps, the grouping each reader chose and the readers'
  wall time.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from triplet_pose import metric_writer

BINS = ("unoccluded", "partly", "heavily")


def _grid(cells, value: Callable[[Mapping[str, Any]], str], *, width: int = 20) -> list[str]:
  names = list(dict.fromkeys(c["representation"] for c in cells))
  counts = sorted({c["num_phosphenes"] for c in cells})
  first = max([len(n) for n in names] + [16])
  lines = [f"{'':<{first}}" + "".join(f"{f'N={n}':>{width}}" for n in counts)]
  by = {(c["representation"], c["num_phosphenes"]): c for c in cells}
  for name in names:
    row = [value(by[(name, n)]) if (name, n) in by else "-" for n in counts]
    lines.append(f"{name:<{first}}" + "".join(f"{v:>{width}}" for v in row))
  return lines


def _ci(summary: Mapping[str, Any], scale: float = 1.0) -> str:
  lo, hi = summary["ci95"]
  return f"{scale * summary['mean']:.1f} [{scale * lo:.1f},{scale * hi:.1f}]"


def _bins(cell: Mapping[str, Any]) -> str:
  values = cell.get("by_occlusion", {})
  return " / ".join(f"{values[b]['mean']:.1f}" if b in values else "-" for b in BINS)


def format_scenes(results: Mapping[str, Any]) -> str:
  """The scenes tables as text."""
  cells = results["cells"]
  first = cells[0]
  ceiling = results.get("ceiling")
  lines = [f"Scenes: several people per image, protocol ideal (a fresh associative-embedding "
           f"reader per cell); {first['seeds']} seeds x {first['scenes']} test scenes "
           f"({first['persons']} persons)", "",
           "Multi-person mAP@0.5 (%): mean [95% CI] by bootstrap over seeds and test scenes",
           *_grid(cells, lambda c: _ci(c["map"])), "",
           "Person count right (% of test scenes): mean [95% CI]",
           *_grid(cells, lambda c: _ci(c["count_accuracy"], 100.0)), ""]
  persons = first.get("persons_by_occlusion", {})
  lines += ["mAP by occlusion (share of a person's joints hidden): unoccluded / partly / "
            "heavily; persons " + " / ".join(str(persons.get(b, 0)) for b in BINS),
            *_grid(cells, _bins), ""]
  lines += ["Implant budget per frame: active electrodes / charge (uC), mean over test scenes",
            *_grid(cells, lambda c: f"{c['budget']['active_electrodes']:.0f} / "
                   f"{c['budget']['charge_per_frame']:.2f}"), ""]
  lines += ["Grouping chosen on training scenes (detection threshold, fewest joints), per seed",
            *_grid(cells, lambda c: " ".join(
                f"{g['detection_threshold']:.1f},{g['min_joints']}" for g in c["grouping"] if g))]
  if ceiling:
    lines += ["", f"Ceiling (perfect maps at the reader's {ceiling['heatmap_size']}x"
              f"{ceiling['heatmap_size']} heatmaps): mAP {ceiling['map']:.1f}, count right "
              f"{100 * ceiling['count_accuracy']:.0f}%, by occlusion "
              + " / ".join(f"{ceiling['by_occlusion'].get(b, float('nan')):.1f}" for b in BINS)]
  wall = sum(c.get("seconds", 0.0) for c in cells)
  lines += ["", f"Scene readers: {metric_writer.format_duration(wall)} wall"]
  return "\n".join(lines)
