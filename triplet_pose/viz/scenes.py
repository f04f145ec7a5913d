"""Scene panels: the image, the grouped poses in distinct colours, and each
representation's phosphenes of the whole scene."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from triplet_pose.viz import poses

# One colour per person (distinct, readable over photos).
PERSON_COLOURS = ("#ff4d4d", "#4da6ff", "#ffd11a", "#33cc66", "#cc66ff", "#ff9933",
                  "#00e6e6", "#ff66b3")


def scene_panel(rows: Sequence[Mapping[str, object]], *, title: str | None = None) -> Figure:
  """One row per scene: image with grouped persons, then phosphene pictures.

  Args:
    rows: per scene {'image': (H, W, 3) uint8, 'persons': (P, 16, 3) x, y,
      score (NaN: missing), optional 'contours': (P, 26, 2 or 3),
      'phosphenes': {representation: (h, w) image in [0, 1]}}.
    title: figure title.

  Returns:
    The figure.
  """
  # Every representation any row has: a scene where nobody was found has none.
  names = list(dict.fromkeys(n for row in rows for n in row.get("phosphenes", {})))
  cols = 1 + len(names)
  fig = Figure(figsize=(2.2 * cols, 2.2 * len(rows) + (0.3 if title else 0)), dpi=100)
  axes = fig.subplots(len(rows), cols, squeeze=False)
  for r, row in enumerate(rows):
    ax = axes[r, 0]
    ax.imshow(row["image"])
    persons = np.asarray(row["persons"], np.float64).reshape(-1, 16, 3)
    contours = row.get("contours")
    for p, person in enumerate(persons):
      colour = PERSON_COLOURS[p % len(PERSON_COLOURS)]
      found = np.isfinite(person).all(-1)
      poses.draw_skeleton(ax, np.nan_to_num(person[:, :2]), visible=found, colour=colour,
                          linewidth=1.5, markersize=2.5)
      if contours is not None and p < len(contours):
        c = np.asarray(contours[p])[:, :2]
        poses.draw_triplet(ax, c, linewidth=0.8, markersize=1.5)
    ax.set_title(f"{len(persons)} persons" if r == 0 else "", fontsize=8)
    for c, name in enumerate(names):
      if name in row.get("phosphenes", {}):
        axes[r, c + 1].imshow(poses.phosphene_picture(row["phosphenes"][name]))
      else:  # nothing to stimulate: a dark field
        axes[r, c + 1].set_facecolor("black")
      if r == 0:
        axes[r, c + 1].set_title(name, fontsize=8)
    for ax in axes[r]:
      ax.set_xticks([])
      ax.set_yticks([])
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout(pad=0.3)
  return fig
