"""Figures of the readability benchmark (matplotlib; the simulator stays free of it).

* `pckh_plot`: observer PCKh (95% CI) against the number of phosphenes, one
  line per representation, one panel per protocol (solid: true pose;
  dashed: predicted pose), chance level.
* `example_grid`: one validation person, one row per representation: its
  mask (for `learned`, the pose heatmaps it encodes), then its phosphene
  image at every phosphene count.
"""

from __future__ import annotations

import pathlib
from typing import Any, Mapping

from matplotlib.figure import Figure
import numpy as np


def pckh_plot(results: Mapping[str, Any]) -> Figure:
  """PCKh (%) against phosphenes (log axis) per representation, with 95% CIs.

  Two panels: the ideal and the common protocol; solid from the true pose,
  dashed from the predicted one.
  """
  cells = results["cells"]
  names = list(dict.fromkeys(c["representation"] for c in cells))
  counts = sorted({c["num_phosphenes"] for c in cells})
  colours = {name: f"C{i % 10}" for i, name in enumerate(names)}
  fig = Figure(figsize=(10.0, 4.2), dpi=110)
  axes = fig.subplots(1, 2, sharey=True)
  for ax, protocol in zip(axes, ("ideal", "common")):
    for name in names:
      for pose, style in (("true", "o-"), ("predicted", "x--")):
        rows = sorted((c for c in cells if c["representation"] == name
                       and c["protocol"] == protocol and c["pose"] == pose),
                      key=lambda c: c["num_phosphenes"])
        if not rows:
          continue
        n = [c["num_phosphenes"] for c in rows]
        mean = np.asarray([c["pckh"]["mean"] for c in rows])
        lo, hi = (np.asarray([c["pckh"]["ci95"][i] for c in rows]) for i in (0, 1))
        ax.errorbar(n, mean, yerr=[mean - lo, hi - mean], fmt=style, color=colours[name],
                    capsize=2, alpha=1.0 if pose == "true" else 0.6,
                    label=name if pose == "true" else None)
    ax.axhline(100 * results["chance"]["Mean"], color="grey", lw=1, ls=":",
               label="chance (mean pose)")
    ax.set_xscale("log")
    ax.set_xticks(counts, [str(n) for n in counts])
    ax.minorticks_off()
    ax.set_ylim(0, 100)
    ax.set_xlabel("phosphenes")
    ax.set_title(f"{protocol} reader (solid: true pose, dashed: predicted)", fontsize=9)
    ax.grid(True, alpha=0.3)
  axes[0].set_ylabel("observer PCKh@0.5 Mean (%), 95% CI")
  axes[1].legend(fontsize=7, loc="best")
  fig.tight_layout()
  return fig


def example_grid(results: Mapping[str, Any], examples_dir: str | pathlib.Path, *,
                 panel: float = 1.2) -> Figure:
  """Masks and phosphene images of the example person (representation x N).

  Under each phosphene image: its IoU with the silhouette image (the mean
  over the test figures, `pictoriality`).
  """
  examples_dir = pathlib.Path(examples_dir)
  cells = results["cells"]
  names = list(dict.fromkeys(c["representation"] for c in cells))
  counts = sorted({c["num_phosphenes"] for c in cells})
  fig = Figure(figsize=(panel * (len(counts) + 1), panel * len(names) + 0.4), dpi=100)
  axes = fig.subplots(len(names), len(counts) + 1, squeeze=False)
  iou = {(c["representation"], c["num_phosphenes"]): c["pictoriality"]["iou"] for c in cells
         if c["protocol"] == "ideal" and c["pose"] == "true" and "pictoriality" in c}
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
      if c and (name, counts[c - 1]) in iou:  # how much it looks like the silhouette
        ax.set_xlabel(f"IoU {iou[(name, counts[c - 1])]:.2f}", fontsize=6, labelpad=1)
      if r == 0:
        ax.set_title(title, fontsize=7)
      if c == 0:
        ax.set_ylabel(name, fontsize=7)
  fig.tight_layout(pad=0.3)
  return fig
