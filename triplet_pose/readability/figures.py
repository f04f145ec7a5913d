"""Figures of the readability benchmark (matplotlib; the simulator stays free of it).

* `pckh_plot`: observer PCKh against the number of phosphenes, one line per
  representation (solid: true pose; dashed: predicted pose), chance level.
* `example_grid`: one validation person, one row per representation: its
  mask (for `learned`, the pose heatmaps it encodes), then its phosphene
  image at every phosphene count.
"""

from __future__ import annotations

import pathlib
from typing import Any, Mapping

from matplotlib.figure import Figure
import numpy as np


def pckh_plot(results: Mapping[str, Any], *, metric: str = "Mean") -> Figure:
  """PCKh (%) against phosphenes (log axis) per representation."""
  cells = results["cells"].values()
  names = list(dict.fromkeys(c["representation"] for c in cells))
  fig = Figure(figsize=(6.4, 4.2), dpi=110)
  ax = fig.subplots()
  colours = {name: f"C{i % 10}" for i, name in enumerate(names)}
  for name in names:
    rows = sorted((c for c in cells if c["representation"] == name),
                  key=lambda c: c["num_phosphenes"])
    n = [c["num_phosphenes"] for c in rows]
    ax.plot(n, [100 * c["ground_truth"][metric] for c in rows], "o-", color=colours[name],
            label=name)
    if all(c["predicted"] for c in rows):
      ax.plot(n, [100 * c["predicted"][metric] for c in rows], "x--", color=colours[name],
              alpha=0.7)
  ax.axhline(100 * results["chance"][metric], color="grey", lw=1, ls=":",
             label="chance (mean pose)")
  ax.set_xscale("log")
  counts = sorted({c["num_phosphenes"] for c in cells})
  ax.set_xticks(counts, [str(n) for n in counts])
  ax.minorticks_off()
  ax.set_ylim(0, 100)
  ax.set_xlabel("phosphenes")
  ax.set_ylabel(f"observer PCKh@0.5 {metric} (%)")
  ax.set_title("Which representation can the observer read? "
               "(solid: true pose, dashed: predicted)", fontsize=9)
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=7, loc="best")
  fig.tight_layout()
  return fig


def example_grid(results: Mapping[str, Any], examples_dir: str | pathlib.Path, *,
                 panel: float = 1.2) -> Figure:
  """Masks and phosphene images of the example person (representation x N)."""
  examples_dir = pathlib.Path(examples_dir)
  cells = results["cells"].values()
  names = list(dict.fromkeys(c["representation"] for c in cells))
  counts = sorted({c["num_phosphenes"] for c in cells})
  fig = Figure(figsize=(panel * (len(counts) + 1), panel * len(names) + 0.4), dpi=100)
  axes = fig.subplots(len(names), len(counts) + 1, squeeze=False)
  for r, name in enumerate(names):
    pictures = [("mask" if name != "learned" else "pose heatmaps",
                 examples_dir / f"{name}_mask.npy")]
    pictures += [(f"N={n}", examples_dir / f"{name}_{n}.npy") for n in counts]
    for c, (title, path) in enumerate(pictures):
      ax = axes[r, c]
      if path.exists():
        image = np.load(path)
        # Phosphene images are dim where few phosphenes are lit: stretch each.
        ax.imshow(image, cmap="gray", vmin=0.0, vmax=max(float(image.max()), 1e-6),
                  interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      if r == 0:
        ax.set_title(title, fontsize=7)
      if c == 0:
        ax.set_ylabel(name, fontsize=7)
  fig.tight_layout(pad=0.3)
  return fig
