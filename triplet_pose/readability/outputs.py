"""The readability benchmark's files: results.json, the tables and the figures.

* `read_results` / `write_results`: the workdir's results.json, rewritten
  after every cell (what a resumed run starts from), with its provenance
  block and the config beside (results.config.json); `save_example`: one
  person's images per cell, in examples/.
* `format_table`: the representation x phosphene-count table of one metric.
* `write_outputs`: table.txt (with the provenance at its foot), the
  PCKh-vs-phosphenes plot and the example grid (`OUTPUT_FILES`; the demo's
  report reads them).
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Mapping

import numpy as np

from triplet_pose import metric_writer
from triplet_pose import provenance
from triplet_pose import storage
from triplet_pose import viz
from triplet_pose.readability import figures as figures_lib

RESULTS_FILE = "results.json"
# One person's mask and phosphene images per cell, for the example grid.
EXAMPLES_DIR = "examples"
# The files `write_outputs` writes into the workdir (the demo's report reads them).
OUTPUT_FILES = {"table": "table.txt", "plot": "pckh_vs_phosphenes.png",
                "examples": "examples.png"}


def cell_key(name: str, num_phosphenes: int) -> str:
  """The key of a cell in results['cells']: '<representation>/<N>'."""
  return f"{name}/{num_phosphenes}"


def read_results(workdir: str | pathlib.Path) -> dict[str, Any]:
  """The workdir's results.json, or {} when there is none yet."""
  path = pathlib.Path(workdir) / RESULTS_FILE
  return json.loads(path.read_text()) if path.exists() else {}


def write_results(workdir: str | pathlib.Path, results: Mapping[str, Any]) -> None:
  """Replaces the workdir's results.json whole (floats from numpy included),
  and the config its provenance block hashes beside it."""
  provenance.write_json(pathlib.Path(workdir) / RESULTS_FILE, dict(results), indent=1)


def save_example(workdir: str | pathlib.Path, name: str, num_phosphenes: int, *,
                 image: np.ndarray, mask: np.ndarray) -> None:
  """Keeps a cell's example image and its representation's mask (or heatmaps)."""
  folder = pathlib.Path(workdir) / EXAMPLES_DIR
  folder.mkdir(parents=True, exist_ok=True)
  np.save(folder / f"{name}_{num_phosphenes}.npy", image)
  np.save(folder / f"{name}_mask.npy", mask)


def format_table(results: Mapping[str, Any], *, metric: str = "Mean") -> str:
  """The representation x phosphenes table of one metric, in percent.

  Blocks: from the true pose, from the predicted pose (when measured), and
  the SSIM of predicted- vs true-pose phosphene images.
  """
  cells = results["cells"]
  names = list(dict.fromkeys(c["representation"] for c in cells.values()))
  counts = sorted({c["num_phosphenes"] for c in cells.values()})
  width = max([len(n) for n in names] + [16])
  head = f"{'':<{width}}" + "".join(f"{f'N={n}':>8}" for n in counts)

  def block(title, value):
    lines = [title, head]
    for name in names:
      row = [value(cells.get(cell_key(name, n))) for n in counts]
      lines.append(f"{name:<{width}}" + "".join(f"{v:>8}" for v in row))
    return lines

  pct = lambda key: lambda c: ("-" if not c or not c[key] else f"{100 * c[key][metric]:.1f}")
  lines = [f"Observer PCKh ({metric}, %) on {_persons(results)} validation figures; "
           f"chance (the mean pose) {100 * results['chance'][metric]:.1f}", ""]
  lines += block("From the true pose", pct("ground_truth"))
  if any(c["predicted"] for c in cells.values()):
    lines += ["", *block("From the predicted pose (joint + triplet models)", pct("predicted")),
              "", *block("SSIM, predicted- vs true-pose phosphene images",
                         lambda c: "-" if not c or c["ssim"] is None else f"{c['ssim']:.3f}")]
  cpu = sum(c.get("cpu_seconds", 0.0) for c in cells.values())
  wall = sum(c.get("seconds", 0.0) for c in cells.values())
  lines += ["", f"Cells: {metric_writer.format_duration(wall)} wall"
            + (f", {metric_writer.format_duration(cpu)} of CPU time (all threads)" if cpu else "")]
  for key, value in results.get("spread", {}).items():
    lines += ["", f"Run-to-run spread: {key} with observer seeds {value['seeds']}: "
              + " vs ".join(f"{100 * m:.1f}" for m in value["Mean"])]
  return "\n".join(lines)


def _persons(results) -> str:
  return str(results["config"].get("num_validation", "?"))


def write_outputs(results: Mapping[str, Any], workdir: str | pathlib.Path
                  ) -> dict[str, pathlib.Path]:
  """Writes table.txt (Mean, then AUC), the PCKh-vs-N plot and the example grid."""
  workdir = pathlib.Path(workdir)
  paths = {key: workdir / name for key, name in OUTPUT_FILES.items()}
  storage.write_text(paths["table"], format_table(results) + "\n\n"
                     + format_table(results, metric="AUC") + "\n\n"
                     + "\n".join(provenance.format_lines(results.get(provenance.KEY))) + "\n")
  viz.save_figure(figures_lib.pckh_plot(results), paths["plot"])
  viz.save_figure(figures_lib.example_grid(results, workdir / EXAMPLES_DIR), paths["examples"])
  return paths
