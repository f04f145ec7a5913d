"""The readability benchmark's text tables (table.txt), from results.json.

Every PCKh is a mean over seeds and test figures with its 95% bootstrap CI.
An ordering is stated only where the paired test's CI of the difference
excludes zero (`stats.ordering`); elsewhere the table says "no difference
found".

* `format_tables(results)`: PCKh per protocol (true, then predicted pose),
  budgets, PCKh at equal budget, pictoriality, transfer across N, the other
  layouts, the orderings at each N and where the two protocols disagree.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from triplet_pose import metric_writer
from triplet_pose.readability import stats

PROTOCOL_TITLES = {"ideal": "ideal (a fresh reader per cell)",
                   "common": "common (one frozen reader of every drawn representation)"}


def _grid(cells, value: Callable[[Mapping[str, Any]], str], *, width: int = 17) -> list[str]:
  names = list(dict.fromkeys(c["representation"] for c in cells))
  counts = sorted({c["num_phosphenes"] for c in cells})
  first = max([len(n) for n in names] + [16])
  lines = [f"{'':<{first}}" + "".join(f"{f'N={n}':>{width}}" for n in counts)]
  by = {(c["representation"], c["num_phosphenes"]): c for c in cells}
  for name in names:
    row = [value(by[(name, n)]) if (name, n) in by else "-" for n in counts]
    lines.append(f"{name:<{first}}" + "".join(f"{v:>{width}}" for v in row))
  return lines


def _ci(summary: Mapping[str, Any] | None) -> str:
  if not summary:
    return "-"
  lo, hi = summary["ci95"]
  return f"{summary['mean']:.1f} [{lo:.1f},{hi:.1f}]"


def _select(results, **where) -> list[Mapping[str, Any]]:
  return [c for c in results["cells"] if all(c.get(k) == v for k, v in where.items())]


def _orderings(results, protocol: str) -> list[str]:
  """At each N, the representations by mean, each pair of neighbours with its verdict."""
  lines = []
  tests = {(t["num_phosphenes"], t["a"], t["b"]): t for t in results.get("comparisons", [])
           if t["protocol"] == protocol and "representation" not in t}
  for n in sorted({c["num_phosphenes"] for c in _select(results, protocol=protocol)}):
    ranked = sorted(_select(results, protocol=protocol, pose="true", num_phosphenes=n),
                    key=lambda c: -c["pckh"]["mean"])
    text = ranked[0]["representation"] if ranked else ""
    for hi, lo in zip(ranked, ranked[1:]):
      a, b = hi["representation"], lo["representation"]
      test = tests.get((n, a, b)) or tests.get((n, b, a))
      if test is None:
        text += f" ? {b}"
        continue
      sign = -1 if test["a"] == b else 1
      lo_ci, hi_ci = sorted(sign * v for v in test["ci95"])
      found = stats.ordering(a, b, {"ci95": [lo_ci, hi_ci]}) != stats.NO_DIFFERENCE
      text += f" {'>' if found else '='} {b}"
    lines.append(f"  N={n}: {text}")
  mono = [t for t in results.get("comparisons", []) if t["protocol"] == protocol
          and "representation" in t]
  for t in mono:
    lines.append(f"  {t['representation']}, N={t['a']} - N={t['b']}: {t['difference']:+.1f} "
                 f"[{t['ci95'][0]:+.1f},{t['ci95'][1]:+.1f}], p={t['p']:.3f}: {t['verdict']}")
  return lines


def _disagreements(results) -> list[str]:
  """Pairs whose paired verdict differs between the two protocols at the same N."""
  verdicts = {}
  for t in results.get("comparisons", []):
    if "representation" not in t:
      verdicts.setdefault((t["num_phosphenes"], t["a"], t["b"]), {})[t["protocol"]] = t
  lines = []
  for (n, a, b), by in sorted(verdicts.items()):
    if len(by) == 2 and by["ideal"]["verdict"] != by["common"]["verdict"]:
      lines.append(f"  N={n}: ideal says {by['ideal']['verdict']} "
                   f"({by['ideal']['difference']:+.1f}), common says "
                   f"{by['common']['verdict']} ({by['common']['difference']:+.1f}) [{a} - {b}]")
  return lines or ["  none"]


def format_tables(results: Mapping[str, Any]) -> str:
  """Every table of a run, as text."""
  cells = results["cells"]
  seeds = max((len(c.get("seeds", [])) for c in cells), default=0)
  figures = max((c.get("figures", 0) for c in cells), default=0)
  chance = 100 * results["chance"]["Mean"]
  lines = [f"Observer PCKh@0.5 (Mean, %): mean [95% CI] by bootstrap over {seeds} seeds x "
           f"{figures} test figures; chance (the mean pose) {chance:.1f}"]
  for protocol, title in PROTOCOL_TITLES.items():
    for pose, what in (("true", "true pose"), ("predicted", "predicted pose")):
      chosen = _select(results, protocol=protocol, pose=pose)
      if chosen:
        lines += ["", f"Protocol {title}, from the {what}", *_grid(chosen, lambda c: _ci(
            c["pckh"]))]
  true_ideal = _select(results, protocol="ideal", pose="true")
  if true_ideal:
    lines += ["", "Implant budget per frame: active electrodes / charge (uC); "
              f"units: {results.get('units', {}).get('charge_per_frame', '')}",
              *_grid(true_ideal, lambda c: f"{c.get('active_electrodes', 0):.0f} / "
                     f"{c.get('charge_per_frame', 0):.2f}")]
    lines += ["", "Pictoriality: IoU / SSIM against the silhouette image as the implant shows it",
              *_grid(true_ideal, lambda c: f"{c['pictoriality']['iou']:.2f} / "
                     f"{c['pictoriality']['ssim']:.2f}" if "pictoriality" in c else "-")]
  capped = [c for c in _select(results, protocol="common", pose="true")
            if "pckh_equal_budget" in c]
  if capped:
    lines += ["", "Common reader at equal budget (every representation capped at the drawn "
              "median, as learned is trained)",
              *_grid(capped, lambda c: _ci(c["pckh_equal_budget"]))]
  for c in true_ideal:
    if c.get("transfer"):
      moved = " ".join(f"N={k}: {v['mean']:.1f}" for k, v in c["transfer"].items())
      lines.append(f"Transfer, {c['representation']} read at N={c['num_phosphenes']} "
                   f"({c['pckh']['mean']:.1f}) tested at {moved}")
  for protocol in PROTOCOL_TITLES:
    moved = [c for c in _select(results, protocol=protocol, pose="true")
             if c.get("other_layouts")]
    if moved:
      lines += ["", f"Second electrode layout, {protocol}: layout 0 -> other layouts",
                *_grid(moved, lambda c: f"{c['pckh']['mean']:.1f} -> " + ",".join(
                    f"{v['mean']:.1f}" for v in c["other_layouts"].values()))]
  for protocol in PROTOCOL_TITLES:
    lines += ["", f"Orderings, {protocol} (paired test across test figures; '=' no "
              "difference found)", *_orderings(results, protocol)]
  lines += ["", "Where the protocols disagree", *_disagreements(results)]
  wall = sum(c.get("seconds", 0.0) for c in cells)
  lines += ["", f"Readers: {metric_writer.format_duration(wall)} wall"]
  return "\n".join(lines)
