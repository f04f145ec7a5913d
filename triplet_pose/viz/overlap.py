"""The overlap modes of the triplet's phosphenes side by side (readability figure)."""

from __future__ import annotations

import functools
from typing import Mapping

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from triplet_pose import phosphenes
from triplet_pose.phosphenes import readability
from triplet_pose.viz.poses import save_figure

_OVERLAP_TITLES = {"none": "plain", "nearest": "nearest in front",
                   "outline": "no fill at crossings"}


def _crop_box(masks, margin: int) -> tuple[slice, slice]:
  """Rows and columns around the non-zero part of (H, W) masks, plus a margin."""
  union = np.max(np.stack(masks), axis=0) > 0
  if not union.any():
    return slice(None), slice(None)
  rows, cols = np.nonzero(union.any(axis=1))[0], np.nonzero(union.any(axis=0))[0]
  h, w = union.shape
  return (slice(max(rows[0] - margin, 0), min(rows[-1] + margin + 1, h)),
          slice(max(cols[0] - margin, 0), min(cols[-1] + margin + 1, w)))


def overlap_figure(comparisons: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]],
                   *, crop_margin: int | None = 12, panel_width: float = 1.6) -> Figure:
  """Overlap modes side by side: one row per comparison; per mode, mask and phosphenes.

  Args:
    comparisons: {row label: `readability.compare_overlap_modes` result of
      one (H, W) pose}, every row with the same modes (column titles: the
      modes).
    crop_margin: show only the masks' non-zero area plus this many pixels
      (same crop for the whole figure); None shows the whole images.
    panel_width: width of one picture in inches.

  Returns:
    a matplotlib `Figure` (`save_figure` writes it, `figure_to_array` turns
    it into an array for `Report.image`).
  """
  modes = list(next(iter(comparisons.values())))
  box = (slice(None), slice(None))
  if crop_margin is not None:
    box = _crop_box([m for result in comparisons.values() for m, _ in result.values()],
                    crop_margin)
  h, w = next(iter(comparisons.values()))[modes[0]][0][box].shape
  rows, cols = len(comparisons), 2 * len(modes)
  fig = Figure(figsize=(panel_width * cols, (panel_width * h / w + 0.5) * rows), dpi=100)
  FigureCanvasAgg(fig)
  axes = fig.subplots(rows, cols, squeeze=False)
  for r, (label, result) in enumerate(comparisons.items()):
    for c, mode in enumerate(modes):
      for k, (kind, picture) in enumerate(zip(("mask", "phosphenes"), result[mode])):
        ax = axes[r, 2 * c + k]
        ax.imshow(picture[box], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(f"{_OVERLAP_TITLES.get(mode, mode)}\n{kind}", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
        if c == 0 and k == 0:
          ax.set_ylabel(label, fontsize=8)
  fig.tight_layout(pad=0.4, w_pad=0.3, h_pad=0.6)
  return fig


def write_readability_figure(path, sim, *, line_width: float = 5.0, frames: int = 10):
  """Writes the overlap modes of `readability.CROSSING_CONTOUR` (docs/phosphene_readability.png).

  Rows: contour lines only (the thesis's rendering), then filled limbs and
  torso (masks and phosphenes each); columns: plain, 'nearest', 'nearest'
  with a gap of `line_width`, 'outline'.

  Args:
    path: the PNG to write.
    sim: a `Simulator`, e.g. the demo's (`prediction.PhospheneRenderer().sim`).
    line_width: contour line width in simulator pixels (the demo's 5).
    frames: frames of constant stimulation.

  Returns:
    the path written.
  """
  rows = {}
  for label, fill in (("contour lines", False), ("filled limbs and torso", True)):
    style = phosphenes.DrawStyle(line_width=line_width, fill_limbs=fill, fill_torso=fill)
    compare = functools.partial(readability.compare_overlap_modes, sim,
                                readability.CROSSING_CONTOUR,
                                image_size=readability.CROSSING_IMAGE_SIZE, frames=frames)
    plain = compare(style=style)
    gap = compare(style=style.replace(overlap="nearest", overlap_gap=line_width),
                  modes=("nearest",))
    rows[label] = {"none": plain["none"], "nearest": plain["nearest"],
                   f"nearest, gap {line_width:g} px": gap["nearest"],
                   "outline": plain["outline"]}
  return save_figure(overlap_figure(rows), path)
