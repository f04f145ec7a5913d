"""Poses over images, heatmaps and phosphene pictures; figures to arrays and PNGs.

Colours follow the side of the body: right limbs red, left limbs blue, the
head and torso green, so a flipped prediction is visible at a glance.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Mapping

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Polygon

from triplet_pose import keypoints as kp
from triplet_pose import storage

RIGHT, LEFT, CENTRE = "#e8383d", "#2f7fff", "#33cc66"


def _side_colour(name: str) -> str:
  if name.startswith("r_") or "right" in name:
    return RIGHT
  if name.startswith("l_") or "left" in name:
    return LEFT
  return CENTRE


JOINT_COLOURS = tuple(_side_colour(n) for n in kp.JOINT_NAMES)
CONTOUR_COLOURS = tuple(_side_colour(n) for n in kp.CONTOUR_NAMES)


def _edge_colour(names, a: int, b: int) -> str:
  ca, cb = _side_colour(names[a]), _side_colour(names[b])
  return ca if ca == cb else (ca if ca != CENTRE else cb)


def _shown(visible, count: int) -> np.ndarray:
  return np.ones(count, bool) if visible is None else np.asarray(visible) > 0


def draw_skeleton(ax, joints, *, visible=None, linewidth: float = 2.0,
                  markersize: float = 4.0, colour: str | None = None,
                  alpha: float = 1.0) -> None:
  """Draws the 16 joints (16, 2) and SKELETON_EDGES on `ax`.

  Args:
    ax: a matplotlib Axes.
    joints: (16, 2) (x, y) in the pixels of what `ax` shows.
    visible: optional (16,) weights; joints <= 0 are not drawn.
    linewidth: line width in points.
    markersize: joint marker size in points.
    colour: one colour for everything (e.g. ground truth); default by side.
    alpha: opacity.
  """
  joints = np.asarray(joints, np.float64)
  shown = _shown(visible, len(joints))
  for a, b in kp.SKELETON_EDGES:
    if shown[a] and shown[b]:
      ax.plot(joints[[a, b], 0], joints[[a, b], 1], "-", lw=linewidth, alpha=alpha,
              color=colour or _edge_colour(kp.JOINT_NAMES, a, b),
              solid_capstyle="round")
  for k in np.flatnonzero(shown):
    ax.plot(joints[k, 0], joints[k, 1], "o", ms=markersize, alpha=alpha,
            color=colour or JOINT_COLOURS[k], mec="white", mew=0.6)


def draw_triplet(ax, contour, *, visible=None, linewidth: float = 1.5,
                 markersize: float = 3.5, fill: bool = True) -> None:
  """Draws the 26 contour points, limb outlines and torso edges on `ax`.

  Each limb segment is outlined (and lightly filled) by its quad
  (`keypoints.LIMB_QUADS`: its medial and lateral points at both ends).
  """
  contour = np.asarray(contour, np.float64)
  shown = _shown(visible, len(contour))
  for name, quad in zip(kp.LIMB_SEGMENTS, kp.LIMB_QUADS):
    corners = list(quad)
    if fill and shown[corners].all():
      ax.add_patch(Polygon(contour[corners], closed=True, lw=0, alpha=0.25,
                           color=_side_colour(name)))
  for a, b in kp.CONTOUR_EDGES:
    if shown[a] and shown[b]:
      ax.plot(contour[[a, b], 0], contour[[a, b], 1], "-", lw=linewidth,
              color=_edge_colour(kp.CONTOUR_NAMES, a, b))
  for k in np.flatnonzero(shown):
    ax.plot(contour[k, 0], contour[k, 1], "D" if "lateral" in kp.CONTOUR_NAMES[k] else "o",
            ms=markersize, color=CONTOUR_COLOURS[k], mec="white", mew=0.5)


def heatmap_overlay(image, heatmaps, *, alpha: float = 0.65) -> np.ndarray:
  """The image darkened, with the max over keypoints of `heatmaps` on top.

  Args:
    image: (H, W, 3) uint8 or float in [0, 1].
    heatmaps: (h, w, K) heatmaps (any scale); resized to (H, W) by nearest
      neighbour, so each heatmap cell stays visible.
    alpha: weight of the heatmap colour.

  Returns:
    (H, W, 3) float in [0, 1].
  """
  image = _to_float(image)
  maps = np.asarray(heatmaps, np.float64)
  # Each keypoint's map is min-max scaled before the maximum over keypoints,
  # so every peak shows at full strength whatever the model's output range.
  low = maps.min(axis=(0, 1), keepdims=True)
  span = maps.max(axis=(0, 1), keepdims=True) - low
  maps = np.where(span > 0, (maps - low) / np.where(span > 0, span, 1), 0).max(axis=-1)
  h, w = image.shape[:2]
  rows = np.minimum((np.arange(h) + 0.5) * maps.shape[0] / h, maps.shape[0] - 1).astype(int)
  cols = np.minimum((np.arange(w) + 0.5) * maps.shape[1] / w, maps.shape[1] - 1).astype(int)
  maps = maps[rows][:, cols]
  colour = colormaps["inferno"](maps)[..., :3]
  weight = alpha * maps[..., None]
  return np.clip((1 - weight) * 0.5 * image + weight * colour, 0, 1)


def _to_float(image) -> np.ndarray:
  image = np.asarray(image)
  if image.dtype == np.uint8:
    return image.astype(np.float64) / 255.0
  return np.clip(image.astype(np.float64), 0, 1)


def _image_axes(ax, image, title: str) -> None:
  image = np.asarray(image)
  ax.imshow(image, cmap="gray" if image.ndim == 2 else None,
            vmin=0 if image.ndim == 2 else None, vmax=1 if image.ndim == 2 else None,
            interpolation="bilinear")
  ax.set_title(title, fontsize=10)
  ax.set_xlim(-0.5, image.shape[1] - 0.5)
  ax.set_ylim(image.shape[0] - 0.5, -0.5)
  ax.set_xticks([])
  ax.set_yticks([])


_ROW_TITLES = {"joints": ("Joints", "Joint heatmaps", "Phosphenes of the joints"),
               "contour": ("Triplet points", "Contour heatmaps", "Phosphenes of the triplet")}


@dataclasses.dataclass(frozen=True)
class PanelInputs:
  """What `pose_panel` draws for one image; each mapping is keyed by keypoint
  set name ('joints', 'contour'), and a picture is drawn only when its input
  is given.

  Attributes:
    points: {set: (K, 2)} predicted keypoints.
    visible: {set: (K,)} keypoints to draw (e.g. confidence above a
      threshold); default all.
    heatmaps: {set: (h, w, K)} heatmaps covering the image.
    phosphenes: {set: (phosphene image (Hp, Wp) in [0, 1], activation mask
      (Hp, Wp) or None)}; the mask is shown as a faint blue tint so the
      reader sees what was stimulated.
    ground_truth: {set: (K, 2)} drawn (white) under the prediction (joints).
    ground_truth_visible: {set: (K,)} annotated ground truth.
  """
  points: Mapping[str, np.ndarray] | None = None
  visible: Mapping[str, np.ndarray] | None = None
  heatmaps: Mapping[str, np.ndarray] | None = None
  phosphenes: Mapping[str, tuple[np.ndarray, np.ndarray | None]] | None = None
  ground_truth: Mapping[str, np.ndarray] | None = None
  ground_truth_visible: Mapping[str, np.ndarray] | None = None

  def filled(self) -> "PanelInputs":
    """The same inputs with {} for every mapping not given."""
    return PanelInputs(**{f.name: dict(getattr(self, f.name) or {})
                          for f in dataclasses.fields(self)})


def pose_panel(image, inputs: PanelInputs, *, title: str | None = None,
               panel_size: float = 3.0) -> Figure:
  """The thesis figures 6-13 in one panel for one image.

  One row per keypoint set: the joints (image with skeleton, heatmaps,
  phosphenes: thesis figures 6 and 10) and the triplet (image with contour
  points and limb outlines, heatmaps, phosphenes: figures 7 and 11); each
  picture only when its input is given.

  Args:
    image: (H, W, 3) the image the keypoints' pixels refer to.
    inputs: the keypoints, heatmaps and phosphenes to draw (`PanelInputs`).
    title: figure title.
    panel_size: inches per picture.

  Returns:
    The figure (Agg canvas attached).
  """
  inputs = inputs.filled()
  rows = []
  for name in _ROW_TITLES:
    if inputs.points.get(name) is None and inputs.ground_truth.get(name) is None:
      continue
    titles = _ROW_TITLES[name]
    rows.append([("points", name, titles[0])]
                + ([("heatmaps", name, titles[1])]
                   if inputs.heatmaps.get(name) is not None else [])
                + ([("phosphenes", name, titles[2])]
                   if inputs.phosphenes.get(name) is not None else []))
  if not rows:
    rows.append([("image", None, "Image")])
  ncols = max(len(r) for r in rows)
  top = 0.3 if title else 0.0
  fig = Figure(figsize=(panel_size * ncols, panel_size * len(rows) + top), dpi=100,
               layout="constrained")
  FigureCanvasAgg(fig)
  axes = fig.subplots(len(rows), ncols, squeeze=False)
  for row, row_axes in zip(rows, axes):
    for ax in row_axes[len(row):]:
      ax.set_axis_off()
    for ax, picture in zip(row_axes, row):
      _draw_panel(ax, picture, image, inputs)
  if title:
    fig.suptitle(title, fontsize=11)
  return fig


def _draw_panel(ax, picture: tuple[str, str | None, str], image, a: PanelInputs) -> None:
  """Draws one picture (kind, keypoint set, label) of `pose_panel` from its filled inputs."""
  kind, name, label = picture
  if kind == "heatmaps":
    _image_axes(ax, heatmap_overlay(image, a.heatmaps[name]), label)
    return
  if kind == "phosphenes":
    _image_axes(ax, phosphene_picture(*a.phosphenes[name]), label)
    return
  _image_axes(ax, _to_float(image), label)
  if kind == "image":
    return
  draw = draw_skeleton if name == kp.JOINTS.name else draw_triplet
  if a.ground_truth.get(name) is not None and name == kp.JOINTS.name:
    draw_skeleton(ax, a.ground_truth[name], visible=a.ground_truth_visible.get(name),
                  colour="white", linewidth=3.5, markersize=5, alpha=0.7)
  if a.points.get(name) is not None:
    draw(ax, a.points[name], visible=a.visible.get(name))


def phosphene_picture(phosphenes, mask=None) -> np.ndarray:
  """Gray phosphenes (H, W) in [0, 1] over a faint blue tint of `mask` -> RGB."""
  image = np.clip(np.asarray(phosphenes, np.float64), 0, 1)[..., None].repeat(3, -1)
  if mask is not None:
    tint = np.clip(np.asarray(mask, np.float64), 0, 1)[..., None] * np.array([0.0, 0.1, 0.28])
    image = np.clip(image + tint * (1 - image), 0, 1)
  return image


def figure_to_array(fig: Figure) -> np.ndarray:
  """Renders a figure to an (H, W, 3) uint8 array."""
  canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
  canvas.draw()
  return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_figure(fig: Figure, path: str | pathlib.Path) -> pathlib.Path:
  """Writes `fig` as a PNG (parents created) and returns the path."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  if not isinstance(fig.canvas, FigureCanvasAgg):
    FigureCanvasAgg(fig)
  with storage.atomic_write(path) as tmp:
    fig.savefig(tmp, format="png")
  return path


def prediction_grid(images, pred, *, gt=None, gt_visible=None, heatmaps=None,
                    max_examples: int = 4, panel_size: float = 2.4) -> np.ndarray:
  """A small grid for TensorBoard: poses over images (+ heatmaps below).

  Args:
    images: (B, H, W, 3) crops.
    pred: (B, K, 2) predictions in crop pixels; K = 16 (skeleton) or 26
      (triplet).
    gt: (B, K, 2) ground truth, drawn as white dots.
    gt_visible: (B, K) annotated ground truth.
    heatmaps: (B, h, w, K) heatmaps for a second row.
    max_examples: columns.
    panel_size: inches per cell.

  Returns:
    (H, W, 3) uint8.
  """
  n = min(max_examples, len(images))
  rows = 2 if heatmaps is not None else 1
  fig = Figure(figsize=(panel_size * n, panel_size * rows), dpi=80, layout="constrained")
  FigureCanvasAgg(fig)
  axes = fig.subplots(rows, n, squeeze=False)
  for i in range(n):
    ax = axes[0, i]
    _image_axes(ax, _to_float(images[i]), f"example {i}")
    if gt is not None:
      shown = _shown(None if gt_visible is None else gt_visible[i], gt.shape[1])
      ax.plot(gt[i, shown, 0], gt[i, shown, 1], "o", ms=5, mfc="none", mec="white", mew=1.2)
    if pred.shape[1] == kp.NUM_JOINTS:
      draw_skeleton(ax, pred[i], linewidth=1.5, markersize=3)
    else:
      draw_triplet(ax, pred[i], linewidth=1.2, markersize=2.5)
    if heatmaps is not None:
      _image_axes(axes[1, i], heatmap_overlay(images[i], heatmaps[i]), "heatmaps")
  return figure_to_array(fig)
