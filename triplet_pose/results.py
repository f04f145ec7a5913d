"""Evaluation results as the papers' tables, JSON and a PCKh curve.

* `format_table`: PCKh@0.5 per group in the layout of the papers (with the
  parameters and ms per image of every setting, and its phosphene-space
  error), from what `evaluation.evaluate_models` returns.
* `write_results`: metrics.json, table.txt and pckh_curve.png.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import numpy as np

from triplet_pose import storage
from triplet_pose import viz

# Row labels of the settings of `evaluation.settings_for`.
SETTING_LABELS = {
    "joint_model": "joint model",
    "triplet_predicted_joints": "triplet, predicted joints",
    "triplet_ground_truth_joints": "triplet, ground-truth joints",
    "combined_joints": "combined model",
    "combined_contour": "combined model",
}
# Column order and short names of the paper tables (Newell et al. 2016).
JOINT_COLUMNS = (("Head", "Head"), ("Shoulder", "Sho."), ("Elbow", "Elb."),
                 ("Wrist", "Wri."), ("Hip", "Hip"), ("Knee", "Knee"), ("Ankle", "Ank."))
CONTOUR_COLUMNS = (("Neck", "Neck"),) + JOINT_COLUMNS[1:]


def _format_count(n: int) -> str:
  """A parameter count in 6 characters: 850, 12.3k, 6.73M."""
  if n < 1000:
    return str(n)
  value, unit = (n / 1e6, "M") if n >= 1e6 else (n / 1e3, "k")
  return f"{value:.{max(0, 2 - int(np.log10(value)))}f}{unit}"


def _format_ms(ms: float) -> str:
  """Three significant digits without an exponent: 0.0412, 8.85, 10.4, 1234."""
  return f"{ms:.{max(0, 2 - int(np.floor(np.log10(ms))))}f}"


def format_table(results: dict[str, Any]) -> str:
  """PCKh@0.5 in % in the layout of the papers, one row per setting.

  Each row ends with the parameters of the network(s) of the setting and
  their inference ms per image, when the results have them.
  """
  lines = [f"PCKh@0.5 (%) on {results.get('input', '?')}/{results['split']}, "
           f"{results['persons']} persons, flip test {'on' if results['flip_test'] else 'off'}"]
  width = max(len(SETTING_LABELS[k]) for k in results["settings"]) + 2
  for keypoints, columns, title in (("joints", JOINT_COLUMNS, "Joints"),
                                    ("contour", CONTOUR_COLUMNS, "Contour points")):
    rows = {k: v for k, v in results["settings"].items() if v["keypoints"] == keypoints}
    if not rows:
      continue
    mean16 = all("Mean16" in row for row in rows.values())
    names = ([short for _, short in columns] + ["Mean"] + (["Mean16"] if mean16 else [])
             + ["@0.1", "AUC"])
    lines += ["", title, " " * width + "".join(f"{n:>7}" for n in names)
              + f"{'Params':>9}{'ms/img':>9}"]
    for name, row in rows.items():
      values = [row["groups"][g] for g, _ in columns] + [row["groups"]["Mean"]]
      values += ([row["Mean16"]] if mean16 else []) + [row["Mean@0.1"], row["AUC"]]
      params, ms = row.get("params"), row.get("ms_per_image")
      lines.append(f"{SETTING_LABELS[name]:<{width}}"
                   + "".join(f"{100 * v:>7.1f}" for v in values)
                   + f"{_format_count(params) if params else '-':>9}"
                   + f"{_format_ms(ms) if ms else '-':>9}")
  with_phosphenes = {f"{SETTING_LABELS[k]} ({v['keypoints']})": v
                     for k, v in results["settings"].items() if "phosphene_nmse" in v}
  if with_phosphenes:
    sim = results.get("phosphenes", {})
    label_width = max(map(len, with_phosphenes)) + 2
    lines += ["", f"Phosphene-space error, predicted vs true pose "
              f"({sim.get('num_phosphenes', '?')} phosphenes, {sim.get('resolution', '?')} px)",
              " " * label_width + f"{'NMSE':>7}{'SSIM':>7}"]
    lines += [f"{label:<{label_width}}{row['phosphene_nmse']:>7.3f}{row['phosphene_ssim']:>7.3f}"
              for label, row in with_phosphenes.items()]
  if any("Mean16" in row for row in results["settings"].values()):
    lines += ["", "Mean: the MPII benchmark's 14 joints (no pelvis, thorax), distance <= "
              "0.5 head sizes. Mean16: all 16 joints, distance < 0.5 head sizes, as "
              "princeton-vl's mpii_eval (its published validation figures)."]
  timing = results.get("timing")
  if timing:
    lines += ["", "Params: parameters of the network(s) the setting runs.",
              f"ms/img: inference time per image, median of {timing['timed_batches']} "
              f"jitted batches of {timing['batch_size']} after warm-up, flip test "
              f"{'on' if results['flip_test'] else 'off'}, on {timing['device']}."]
  return "\n".join(lines)


def write_results(results: dict[str, Any], out_dir: str | pathlib.Path) -> dict[str, pathlib.Path]:
  """Writes metrics.json, pckh_curve.png and table.txt into `out_dir`."""
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  paths = {"metrics": out_dir / "metrics.json", "curve": out_dir / "pckh_curve.png",
           "table": out_dir / "table.txt"}
  storage.write_text(paths["metrics"], json.dumps(results, indent=2, allow_nan=True))
  storage.write_text(paths["table"], format_table(results) + "\n")
  curves = {f"{SETTING_LABELS[k]} ({v['keypoints']}), AUC {100 * v['AUC']:.1f}":
            (v["curve"]["threshold"], v["curve"]["Mean"])
            for k, v in results["settings"].items()}
  fig = viz.pckh_curve_figure(curves, title=f"PCKh vs threshold, step {results.get('step')}")
  viz.save_figure(fig, paths["curve"])
  return paths
