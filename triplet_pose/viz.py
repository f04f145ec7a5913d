"""Figures: poses over images, heatmaps, phosphene renderings, training curves.

Everything draws on `matplotlib.figure.Figure` objects with the Agg canvas
(no pyplot, so no global state and no display needed) and returns the figure
or an RGB uint8 array of it (`figure_to_array`) for PNG files, videos and
TensorBoard.

Colours follow the side of the body: right limbs red, left limbs blue, the
head and torso green, so a flipped prediction is visible at a glance.
"""

from __future__ import annotations

import functools
import json
import pathlib
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Polygon

from triplet_pose import keypoints as kp
from triplet_pose import phosphenes
from triplet_pose.phosphenes import readability

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

  Each limb segment of LIMB_SEGMENTS is outlined (and lightly filled) by the
  quadrilateral of its medial and lateral points at both ends.
  """
  contour = np.asarray(contour, np.float64)
  shown = _shown(visible, len(contour))
  for name, seg in kp.LIMB_SEGMENTS.items():
    corners = [seg["medial"][0], seg["medial"][1], seg["lateral"][1], seg["lateral"][0]]
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
  from matplotlib import colormaps  # pylint: disable=g-import-not-at-top
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


def pose_panel(image, *, points: Mapping[str, np.ndarray] | None = None,
               visible: Mapping[str, np.ndarray] | None = None,
               heatmaps: Mapping[str, np.ndarray] | None = None,
               phosphenes: Mapping[str, tuple[np.ndarray, np.ndarray | None]] | None = None,
               ground_truth: Mapping[str, np.ndarray] | None = None,
               ground_truth_visible: Mapping[str, np.ndarray] | None = None,
               title: str | None = None, panel_size: float = 3.0) -> Figure:
  """The thesis figures 6-13 in one panel for one image.

  One row per keypoint set: the joints (image with skeleton, heatmaps,
  phosphenes: thesis figures 6 and 10) and the triplet (image with contour
  points and limb outlines, heatmaps, phosphenes: figures 7 and 11); each
  picture only when its input is given. Every mapping is keyed by keypoint
  set name ('joints', 'contour').

  Args:
    image: (H, W, 3) the image the keypoints' pixels refer to.
    points: {set: (K, 2)} predicted keypoints.
    visible: {set: (K,)} keypoints to draw (e.g. confidence above a
      threshold); default all.
    heatmaps: {set: (h, w, K)} heatmaps covering the image.
    phosphenes: {set: (phosphene image (Hp, Wp) in [0, 1], activation mask
      (Hp, Wp) or None)}; the mask is shown as a faint blue tint so the
      reader sees what was stimulated.
    ground_truth: {set: (K, 2)} drawn (white) under the prediction (joints).
    ground_truth_visible: {set: (K,)} annotated ground truth.
    title: figure title.
    panel_size: inches per picture.

  Returns:
    The figure (Agg canvas attached).
  """
  points, heatmaps, phosphenes = dict(points or {}), dict(heatmaps or {}), dict(phosphenes or {})
  ground_truth = dict(ground_truth or {})
  rows = []
  for name in _ROW_TITLES:
    if points.get(name) is None and ground_truth.get(name) is None:
      continue
    titles = _ROW_TITLES[name]
    rows.append([("points", name, titles[0])]
                + ([("heatmaps", name, titles[1])] if heatmaps.get(name) is not None else [])
                + ([("phosphenes", name, titles[2])]
                   if phosphenes.get(name) is not None else []))
  if not rows:
    rows.append([("image", None, "Image")])
  ncols = max(len(r) for r in rows)
  top = 0.3 if title else 0.0
  fig = Figure(figsize=(panel_size * ncols, panel_size * len(rows) + top), dpi=100,
               layout="constrained")
  FigureCanvasAgg(fig)
  axes = fig.subplots(len(rows), ncols, squeeze=False)
  inputs = dict(points=points, visible=dict(visible or {}), heatmaps=heatmaps,
                phosphenes=phosphenes, ground_truth=ground_truth,
                ground_truth_visible=dict(ground_truth_visible or {}))
  for row, row_axes in zip(rows, axes):
    for ax in row_axes[len(row):]:
      ax.set_axis_off()
    for ax, picture in zip(row_axes, row):
      _draw_panel(ax, picture, image, inputs)
  if title:
    fig.suptitle(title, fontsize=11)
  return fig


def _draw_panel(ax, picture: tuple[str, str | None, str], image, a: dict) -> None:
  """Draws one picture (kind, keypoint set, label) of `pose_panel` from its inputs `a`."""
  kind, name, label = picture
  if kind == "heatmaps":
    _image_axes(ax, heatmap_overlay(image, a["heatmaps"][name]), label)
    return
  if kind == "phosphenes":
    _image_axes(ax, phosphene_picture(*a["phosphenes"][name]), label)
    return
  _image_axes(ax, _to_float(image), label)
  if kind == "image":
    return
  draw = draw_skeleton if name == kp.JOINTS.name else draw_triplet
  if a["ground_truth"].get(name) is not None and name == kp.JOINTS.name:
    draw_skeleton(ax, a["ground_truth"][name], visible=a["ground_truth_visible"].get(name),
                  colour="white", linewidth=3.5, markersize=5, alpha=0.7)
  if a["points"].get(name) is not None:
    draw(ax, a["points"][name], visible=a["visible"].get(name))


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
  fig.savefig(path, format="png")
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


def pckh_curve_figure(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                      *, title: str = "PCKh vs threshold") -> Figure:
  """PCKh (Mean, %) against the threshold, one line per labelled curve."""
  fig = Figure(figsize=(5.5, 4.0), dpi=100)
  FigureCanvasAgg(fig)
  ax = fig.subplots()
  for label, (thresholds, values) in curves.items():
    ax.plot(thresholds, 100 * np.asarray(values), lw=2, label=label)
  ax.set_xlabel("threshold (head sizes)")
  ax.set_ylabel("PCKh (%)")
  ax.set_ylim(0, 100)
  ax.set_xlim(left=0)
  ax.grid(alpha=0.3)
  ax.axvline(0.5, color="gray", lw=0.8, ls="--")
  ax.set_title(title, fontsize=11)
  if curves:
    ax.legend(fontsize=8, loc="upper left")
  fig.tight_layout()
  return fig


def read_loss_per_stack(workdir: str | pathlib.Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{'train/loss_stack_1': (steps, values), ..., 'eval/eval_loss_stack_1': ...}.

  Reads `metrics.jsonl` in the workdir, or else its TensorBoard logs.

  Raises:
    FileNotFoundError: when the workdir holds neither.
  """
  workdir = pathlib.Path(workdir)
  series: dict[str, list[tuple[int, float]]] = {}
  jsonl = workdir / "metrics.jsonl"
  if jsonl.exists():
    for line in jsonl.read_text().splitlines():
      if not line.strip():
        continue
      record = json.loads(line)
      for name, value in record.items():
        if "loss_stack_" in name:
          series.setdefault(name, []).append((int(record["step"]), float(value)))
  elif (workdir / "tensorboard").exists():
    from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
    acc = event_accumulator.EventAccumulator(str(workdir / "tensorboard"),
                                             size_guidance={"tensors": 0})
    acc.Reload()
    for name in acc.Tags().get("tensors", []):
      if "loss_stack_" in name:
        series[name] = [(e.step, float(np.asarray(_tensor_value(e.tensor_proto))))
                        for e in acc.Tensors(name)]
  else:
    raise FileNotFoundError(f"{workdir} has neither metrics.jsonl nor tensorboard/")
  return {k: (np.array([s for s, _ in v]), np.array([x for _, x in v]))
          for k, v in sorted(series.items(), key=lambda kv: _stack_key(kv[0]))}


def _tensor_value(proto):
  from tensorboard.util import tensor_util  # pylint: disable=g-import-not-at-top
  return tensor_util.make_ndarray(proto)


def _stack_key(name: str) -> tuple[str, int]:
  prefix, _, stack = name.rpartition("_")
  return prefix, int(stack) if stack.isdigit() else 0


def loss_per_stack_figure(workdir: str | pathlib.Path, *, smooth: int = 1) -> Figure:
  """Training (and validation) loss of every stack against the step (thesis fig. 2-5).

  Args:
    workdir: a training workdir.
    smooth: moving-average window in logged points (1 = raw).
  """
  series = read_loss_per_stack(workdir)
  fig = Figure(figsize=(9.0, 3.8), dpi=100)
  FigureCanvasAgg(fig)
  axes = fig.subplots(1, 2, squeeze=False)[0]
  from matplotlib import colormaps  # pylint: disable=g-import-not-at-top
  for ax, prefix, title in ((axes[0], "train/", "training loss per stack"),
                            (axes[1], "eval/", "validation loss per stack")):
    names = [n for n in series if n.startswith(prefix)]
    for i, name in enumerate(names):
      steps, values = series[name]
      if smooth > 1 and len(values) >= smooth:
        values = np.convolve(values, np.ones(smooth) / smooth, mode="valid")
        steps = steps[smooth - 1:]
      ax.plot(steps, values, lw=1.5, label=f"stack {_stack_key(name)[1]}",
              color=colormaps["viridis"](i / max(len(names) - 1, 1)))
    ax.set_title(title, fontsize=11)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    if names:
      ax.set_yscale("log")
      ax.legend(fontsize=8)
    else:
      ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
  fig.tight_layout()
  return fig


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
