"""The readability benchmark's files: results.json, runs.json, tables, figures.

* `read_results` / `write_results`: the workdir's results.json, with its
  provenance block and the config beside (results.config.json).
* `read_runs` / `write_runs`: runs.json, every finished reader's
  per-figure scores, rewritten after each (what a resumed run starts from).
* `save_example`: one person's images per condition, in examples/.
* `write_outputs`: table.txt (`tables.format_tables`, with the provenance
  at its foot), the PCKh-vs-phosphenes plot and the example grid
  (`OUTPUT_FILES`; the demo's report reads them).
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Mapping

import numpy as np

from triplet_pose import provenance
from triplet_pose import storage
from triplet_pose import viz
from triplet_pose.readability import figures as figures_lib
from triplet_pose.readability import tables

RESULTS_FILE = "results.json"
RUNS_FILE = "runs.json"
# One person's mask and phosphene images per cell, for the example grid.
EXAMPLES_DIR = "examples"
# The files `write_outputs` writes into the workdir (the demo's report reads them).
OUTPUT_FILES = {"table": "table.txt", "plot": "pckh_vs_phosphenes.png",
                "examples": "examples.png"}


def read_results(workdir: str | pathlib.Path) -> dict[str, Any]:
  """The workdir's results.json, or {} when there is none yet."""
  path = pathlib.Path(workdir) / RESULTS_FILE
  return json.loads(path.read_text()) if path.exists() else {}


def write_results(workdir: str | pathlib.Path, results: Mapping[str, Any]) -> None:
  """Replaces the workdir's results.json whole (floats from numpy included),
  and the config its provenance block hashes beside it."""
  provenance.write_json(pathlib.Path(workdir) / RESULTS_FILE, dict(results), indent=1)


def read_runs(workdir: str | pathlib.Path) -> dict[str, Any]:
  """The workdir's runs.json, or {} when there is none yet."""
  path = pathlib.Path(workdir) / RUNS_FILE
  return json.loads(path.read_text()) if path.exists() else {}


def write_runs(workdir: str | pathlib.Path, runs: Mapping[str, Any]) -> None:
  """Replaces runs.json whole (one line per reader: it grows to a few MB)."""
  lines = ",\n".join(f"{json.dumps(k)}: {json.dumps(v, default=float)}"
                     for k, v in runs.items())
  storage.write_text(pathlib.Path(workdir) / RUNS_FILE, "{\n" + lines + "\n}\n")


def save_example(workdir: str | pathlib.Path, name: str, num_phosphenes: int, *,
                 image: np.ndarray, mask: np.ndarray) -> None:
  """Keeps a cell's example image and its representation's mask (or heatmaps)."""
  folder = pathlib.Path(workdir) / EXAMPLES_DIR
  folder.mkdir(parents=True, exist_ok=True)
  np.save(folder / f"{name}_{num_phosphenes}.npy", image)
  np.save(folder / f"{name}_mask.npy", mask)


def write_outputs(results: Mapping[str, Any], workdir: str | pathlib.Path
                  ) -> dict[str, pathlib.Path]:
  """Writes table.txt, the PCKh-vs-N plot and the example grid."""
  workdir = pathlib.Path(workdir)
  paths = {key: workdir / name for key, name in OUTPUT_FILES.items()}
  storage.write_text(paths["table"], tables.format_tables(results) + "\n\n"
                     + "\n".join(provenance.format_lines(results.get(provenance.KEY))) + "\n")
  viz.save_figure(figures_lib.pckh_plot(results), paths["plot"])
  viz.save_figure(figures_lib.example_grid(results, workdir / EXAMPLES_DIR), paths["examples"])
  return paths
