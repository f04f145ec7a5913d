"""Evaluation results as the papers' tables, JSON and a PCKh curve; comparisons.

* `format_table`: PCKh@0.5 per group in the layout of the papers (with the
  parameters and ms per image of every setting, and its phosphene-space
  error), then the workdir and step of every row's model and the results'
  provenance, from what `evaluation.evaluate_models` returns.
* `write_results`: metrics.json (+ metrics.config.json, the config its
  provenance hashes), table.txt and pckh_curve.png.
* `compare`: two results files side by side, saying first where their
  provenance differs in data, config or code, then the PCKh of both.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import numpy as np

from triplet_pose import provenance
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
  lines += ["", *model_lines(results), "", *provenance.format_lines(results.get(provenance.KEY))]
  return "\n".join(lines)


def model_lines(results: dict[str, Any]) -> list[str]:
  """'Models' and one line per row: the workdir and step of the model it scores."""
  labels = {k: f"{SETTING_LABELS[k]} ({v['keypoints']})" for k, v in results["settings"].items()}
  width = max(map(len, labels.values())) + 2
  lines = ["Models (workdir, checkpoint step):"]
  for name, row in results["settings"].items():
    text = f"{row.get('workdir')}, step {row.get('step')}"
    if row.get("joint_workdir"):
      text += f"; joints from {row['joint_workdir']}, step {row.get('joint_step')}"
    lines.append(f"{labels[name]:<{width}}{text}")
  return lines


def write_results(results: dict[str, Any], out_dir: str | pathlib.Path) -> dict[str, pathlib.Path]:
  """Writes metrics.json (and the config beside it), pckh_curve.png and table.txt."""
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  paths = {"metrics": out_dir / "metrics.json", "curve": out_dir / "pckh_curve.png",
           "table": out_dir / "table.txt"}
  provenance.write_json(paths["metrics"], results)
  config = (results.get(provenance.KEY) or {}).get("config") or {}
  if config.get("file"):
    paths["config"] = out_dir / config["file"]
  storage.write_text(paths["table"], format_table(results) + "\n")
  curves = {f"{SETTING_LABELS[k]} ({v['keypoints']}), AUC {100 * v['AUC']:.1f}":
            (v["curve"]["threshold"], v["curve"]["Mean"])
            for k, v in results["settings"].items()}
  fig = viz.pckh_curve_figure(curves, title=f"PCKh vs threshold, step {results.get('step')}")
  viz.save_figure(fig, paths["curve"])
  return paths


# ----------------------------------------------------------------------------- comparison


def find_results(path: str | pathlib.Path) -> pathlib.Path:
  """The results file `path` names: itself, or in a folder its metrics.json,
  eval/metrics.json (a demo) or eval/<newest step>/metrics.json (a workdir).

  Raises:
    FileNotFoundError: when there is none.
  """
  path = pathlib.Path(path)
  if path.is_file():
    return path
  for candidate in (path / "metrics.json", path / "eval" / "metrics.json"):
    if candidate.is_file():
      return candidate
  steps = sorted((int(d.name), d) for d in (path / "eval").glob("*")
                 if d.name.isdigit() and (d / "metrics.json").is_file())
  if steps:
    return steps[-1][1] / "metrics.json"
  raise FileNotFoundError(f"{path}: no results file (metrics.json, eval/metrics.json or "
                          "eval/<step>/metrics.json; run launch.evaluate first)")


def load_results(path: str | pathlib.Path) -> tuple[pathlib.Path, dict[str, Any]]:
  """(the results file, its contents) for a results file or a workdir.

  Raises:
    FileNotFoundError: no results file there.
    ValueError: the file is not evaluation results.
  """
  path = find_results(path)
  try:
    results = json.loads(path.read_text())
  except ValueError as e:
    raise ValueError(f"{path} is not valid JSON: {e}") from e
  if not isinstance(results, dict) or not isinstance(results.get("settings"), dict):
    raise ValueError(f"{path} holds no evaluation results (no 'settings')")
  return path, results


def compare(a: str | pathlib.Path, b: str | pathlib.Path) -> str:
  """Two results side by side: where their provenance differs in data, config
  or code (one line each), then each row's PCKh in A, in B and B - A.

  Args:
    a, b: results files or workdirs (`find_results`).
  """
  (path_a, res_a), (path_b, res_b) = load_results(a), load_results(b)
  block_a, block_b = res_a.get(provenance.KEY), res_b.get(provenance.KEY)
  differ = provenance.differences(
      block_a, block_b, configs=(provenance.read_config(path_a, block_a),
                                 provenance.read_config(path_b, block_b)))
  lines = []
  for tag, path, results in (("A", path_a, res_a), ("B", path_b, res_b)):
    lines += [f"{tag}: {path}"] + ["   " + line for line in model_lines(results)[1:]]
  if differ:
    lines += ["", f"Provenance: A and B differ in {len(differ)} place(s):"]
    lines += ["  " + line for line in differ]
  else:
    lines += ["", "Provenance: same data, config and code."]
  return "\n".join(lines + ["", _pckh_side_by_side(res_a, res_b)])


def _pckh_side_by_side(a: dict[str, Any], b: dict[str, Any]) -> str:
  """PCKh (%) of every row of either result: A, B and B - A."""
  names = list(a["settings"]) + [k for k in b["settings"] if k not in a["settings"]]
  label_width = max(len(SETTING_LABELS.get(k, k)) for k in names) + 2
  width = label_width + 6  # and 'B - A '
  lines = [f"PCKh@0.5 (%): A, B and B - A (persons: A {a.get('persons')}, "
           f"B {b.get('persons')})"]
  for keypoints, columns, title in (("joints", JOINT_COLUMNS, "Joints"),
                                    ("contour", CONTOUR_COLUMNS, "Contour points")):
    rows = [k for k in names
            if (a["settings"].get(k) or b["settings"].get(k))["keypoints"] == keypoints]
    if not rows:
      continue
    header = [short for _, short in columns] + ["Mean", "@0.1", "AUC"]
    lines += ["", title, " " * width + "".join(f"{n:>7}" for n in header)]
    for name in rows:
      values = {tag: _row_values(res["settings"].get(name), columns)
                for tag, res in (("A", a), ("B", b))}
      delta = (None if values["A"] is None or values["B"] is None
               else [y - x for x, y in zip(values["A"], values["B"])])
      label = SETTING_LABELS.get(name, name)
      for tag, row in (("A", values["A"]), ("B", values["B"]), ("B - A", delta)):
        cells = ("".join(f"{100 * v:>+7.1f}" if tag == "B - A" else f"{100 * v:>7.1f}"
                         for v in row) if row is not None else f"{'(none)':>7}")
        lines.append(f"{label if tag == 'A' else '':<{label_width}}{tag:<6}{cells}")
  return "\n".join(lines)


def _row_values(row: dict[str, Any] | None, columns) -> list[float] | None:
  if row is None:
    return None
  return ([float(row["groups"].get(g, np.nan)) for g, _ in columns]
          + [float(row["groups"]["Mean"]), float(row["Mean@0.1"]), float(row["AUC"])])
