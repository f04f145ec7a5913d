"""The readability benchmark's files: results.json, runs.json, tables, figures.

* `read_results` / `write_results`: the workdir's results.json, with its
  provenance block and the config beside (results.config.json).
* `read_runs` / `write_runs`: runs.json, every finished reader's
  per-figure scores, rewritten after each (what a resumed run starts from).
* `save_example`: one person's images per condition, in examples/.
* `write_outputs`: table.txt (`tables.format_tables`, with the provenance
  at its foot), the PCKh-vs-phosphenes plot and the example grid
  (`OUTPUT_FILES`; the demo's report reads them).
* `write_table`: table.txt alone: the single-person tables and the scenes
  section (`scenes_tables.py`), each with its provenance, of what the
  workdir holds (scenes_results.json and scenes_runs.json: `scenes.py`).
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
from triplet_pose.readability import scenes_tables
from triplet_pose.readability import tables

RESULTS_FILE = "results.json"
RUNS_FILE = "runs.json"
SCENES_RESULTS_FILE = "scenes_results.json"
SCENES_RUNS_FILE = "scenes_runs.json"
# One person's mask and phosphene images per cell, for the example grid.
EXAMPLES_DIR = "examples"
# The files `write_outputs` writes into the workdir (the demo's report reads them).
OUTPUT_FILES = {"table": "table.txt", "plot": "pckh_vs_phosphenes.png",
                "examples": "examples.png"}


def read_results(workdir: str | pathlib.Path, name: str = RESULTS_FILE) -> dict[str, Any]:
  """The workdir's results.json (or `name`), or {} when there is none yet."""
  path = pathlib.Path(workdir) / name
  return json.loads(path.read_text()) if path.exists() else {}


def write_results(workdir: str | pathlib.Path, results: Mapping[str, Any],
                  name: str = RESULTS_FILE) -> None:
  """Replaces the workdir's results.json (or `name`) whole (floats from numpy
  included), and the config its provenance block hashes beside it."""
  provenance.write_json(pathlib.Path(workdir) / name, dict(results), indent=1)


def read_runs(workdir: str | pathlib.Path, name: str = RUNS_FILE) -> dict[str, Any]:
  """The workdir's runs.json (or `name`), or {} when there is none yet."""
  path = pathlib.Path(workdir) / name
  return json.loads(path.read_text()) if path.exists() else {}


def write_runs(workdir: str | pathlib.Path, runs: Mapping[str, Any],
               name: str = RUNS_FILE) -> None:
  """Replaces runs.json (or `name`) whole (one line per reader: it grows to a few MB)."""
  lines = ",\n".join(f"{json.dumps(k)}: {json.dumps(v, default=float)}"
                     for k, v in runs.items())
  storage.write_text(pathlib.Path(workdir) / name, "{\n" + lines + "\n}\n")


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
  write_table(workdir, results)
  viz.save_figure(figures_lib.pckh_plot(results), paths["plot"])
  viz.save_figure(figures_lib.example_grid(results, workdir / EXAMPLES_DIR), paths["examples"])
  return paths


def write_table(workdir: str | pathlib.Path, results: Mapping[str, Any] | None = None
                ) -> pathlib.Path:
  """Writes table.txt: the single-person tables (`results`, else the
  workdir's results.json) and the scenes section, each with its provenance."""
  workdir = pathlib.Path(workdir)
  parts = []
  for found, format_fn in ((results or read_results(workdir), tables.format_tables),
                           (read_results(workdir, SCENES_RESULTS_FILE),
                            scenes_tables.format_scenes)):
    if found and found.get("cells"):
      parts.append(format_fn(found) + "\n\n"
                   + "\n".join(provenance.format_lines(found.get(provenance.KEY))))
  path = workdir / OUTPUT_FILES["table"]
  storage.write_text(path, "\n\n".join(parts) + "\n")
  return path
