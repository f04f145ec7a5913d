"""Readability of triplet phosphenes where limbs overlap (the thesis's open problem).

The thesis found that in the triplet (contour) phosphene rendering an arm in
front of the body blends into the body's outline. `render_pose(...,
overlap=...)` suppresses what lies behind a nearer limb ('nearest') or
leaves crossings unfilled ('outline'); this module adds the point-level
version (`occluded_contour_points`: drop contour points hidden behind a
nearer limb before drawing) and the side-by-side comparison of the modes
for reports (`compare_overlap_modes`, `overlap_figure`).

Depth order, farthest first: the torso polygon (`pose.TORSO_POLYGON`), then
`keypoints.LIMB_SEGMENTS` in order (legs, then arms; later = nearer).
"""

from __future__ import annotations

import functools
from typing import Mapping

import jax
import jax.numpy as jnp
from matplotlib.figure import Figure
import numpy as np

from triplet_pose import keypoints as kp
from triplet_pose import viz
from triplet_pose.phosphenes import pose

# Polygons in depth order: the torso, then every limb quad.
_POLYGONS: tuple[tuple[int, ...], ...] = (pose.TORSO_POLYGON,) + tuple(
    (s["medial"][0], s["medial"][1], s["lateral"][1], s["lateral"][0])
    for s in kp.LIMB_SEGMENTS.values())
# The nearest polygon each contour point is a corner of: its own depth.
POINT_LAYER: tuple[int, ...] = tuple(
    max(k for k, poly in enumerate(_POLYGONS) if c in poly) for c in range(kp.NUM_CONTOUR))
# A front-facing figure in a 256 x 256 image, in the synthetic figures'
# proportions (`synthetic_figures.figures.contour_points` of hand-set joints):
# the left forearm crosses the belly, the right hand rests on the hip and the
# left shin crosses in front of the right one.
CROSSING_CONTOUR = np.asarray([
    [135.3, 234.3], [128.3, 236.3], [123.3, 183.0], [111.1, 183.9], [132.4, 132.0],
    [114.2, 129.9], [141.2, 128.8], [159.0, 133.1], [132.2, 180.2], [143.7, 184.3],
    [110.2, 230.6], [116.8, 233.9], [129.1, 52.9], [144.3, 52.9], [121.8, 120.7],
    [117.4, 126.6], [94.0, 100.5], [84.3, 101.6], [119.4, 75.1], [110.1, 67.2],
    [152.7, 72.6], [164.6, 69.7], [163.7, 103.2], [170.7, 109.9], [124.0, 94.4],
    [122.6, 101.6]], np.float32)
CROSSING_IMAGE_SIZE = (256, 256)
# nearer[c, k]: polygon k lies in front of contour point c.
_NEARER = np.asarray([[k > POINT_LAYER[c] for k in range(len(_POLYGONS))]
                      for c in range(kp.NUM_CONTOUR)], np.float32)


def _occlusion_one(contour, visible, softness):
  xs, ys = contour[None, :, 0], contour[None, :, 1]  # (1, 26) each.
  cover = []
  for poly in _POLYGONS:  # Polygons differ in vertex count: one at a time.
    index = np.asarray(poly)
    signed = pose.polygon_signed_distance(xs, ys, contour[index][None])[0, 0]  # (26,)
    cover.append(jnp.prod(visible[index]) * jnp.clip(0.5 - signed / softness, 0.0, 1.0))
  cover = jnp.stack(cover, axis=1)  # (26, polygons)
  return visible * jnp.prod(1.0 - jnp.asarray(_NEARER, contour.dtype) * cover, axis=1)


@functools.partial(jax.jit, static_argnames=("softness",))
def _occlusion_batch(contour, visible, softness):
  return jax.vmap(functools.partial(_occlusion_one, softness=softness))(contour, visible)


def occluded_contour_points(contour, visible=None, *, softness: float = 1.0) -> jax.Array:
  """Visibility of contour points after hiding those behind a nearer limb.

  A point's depth is that of the nearest polygon it is a corner of (a knee
  point belongs to the shin, a hip point to the thigh, a neck point to the
  torso). It is hidden by every polygon in front of it (see the module
  docstring) that contains it, softly: the weight falls from 1 to 0 over
  `softness` units across the polygon's edge, so it stays differentiable.
  Use the result as `contour_visible` to drop hidden points (and every edge
  and fill they belong to) before drawing. Polygons with an invisible
  corner hide nothing. Jittable, any leading batch axes.

  Args:
    contour: (..., 26, 2) contour points (any units, e.g. image pixels).
    visible: (..., 26) visibility weights in [0, 1]; default all 1.
    softness: width of the soft transition, in the units of `contour`.

  Returns:
    (..., 26) weights in [0, 1]: `visible` times the fraction not hidden.

  Raises:
    ValueError: on a bad shape or a non-positive `softness`.
  """
  contour = jnp.asarray(contour)
  if not jnp.issubdtype(contour.dtype, jnp.floating):
    contour = contour.astype(jnp.float32)
  if contour.shape[-2:] != (kp.NUM_CONTOUR, 2):
    raise ValueError(f"contour must be (..., {kp.NUM_CONTOUR}, 2), got {contour.shape}")
  if visible is None:
    visible = jnp.ones(contour.shape[:-1], contour.dtype)
  visible = jnp.asarray(visible, contour.dtype)
  if visible.shape != contour.shape[:-1]:
    raise ValueError(f"contour visibility must be {contour.shape[:-1]}, got {visible.shape}")
  if not softness > 0:
    raise ValueError(f"softness must be positive, got {softness}")
  # Hidden points may hold NaN or junk: zero them (they then hide nothing).
  contour = jnp.where(visible[..., None] > 0, contour, 0.0)
  batch = contour.shape[:-2]
  out = _occlusion_batch(contour.reshape((-1, kp.NUM_CONTOUR, 2)),
                         visible.reshape((-1, kp.NUM_CONTOUR)), float(softness))
  return out.reshape(batch + (kp.NUM_CONTOUR,))


def compare_overlap_modes(sim, contour, contour_visible=None, *,
                          image_size: tuple[int, int], line_width: float,
                          fill_limbs: bool = True, fill_torso: bool = False,
                          overlap_gap: float = 0.0, frames: int = 10,
                          modes: tuple[str, ...] = pose.OVERLAP_MODES
                          ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Masks and phosphene stills of one contour pose (or a batch) per overlap mode.

  Args:
    sim: a `Simulator`.
    contour: (..., 26, 2) contour points in pixels of the source image.
    contour_visible: (..., 26) visibility weights; default all 1.
    image_size: (H_img, W_img) of the source image.
    line_width: contour line width in pixels of `sim.resolution`.
    fill_limbs: fill the limb quads (as the demo's triplet rendering does).
    fill_torso: fill the torso polygon too.
    overlap_gap: halo of the 'nearest' mode, in pixels (see `render_pose`).
    frames: frames of constant stimulation before the still is taken (the
      tissue's activation builds up over frames).
    modes: which `render_pose` overlap modes, in order.

  Returns:
    {mode: (mask (..., H, W), phosphene image (..., H, W))}, numpy float32,
    in the order of `modes`.
  """
  if frames < 1:
    raise ValueError(f"frames must be >= 1, got {frames}")
  results = {}
  for mode in modes:
    mask = pose.render_pose(contour=contour, contour_visible=contour_visible,
                            image_size=image_size, output_size=sim.resolution,
                            line_width=line_width, fill_limbs=fill_limbs,
                            fill_torso=fill_torso, overlap=mode,
                            overlap_gap=overlap_gap if mode == "nearest" else 0.0)
    amplitude = sim.sample_stimulus(mask, rescale=True)
    images = sim.run(jnp.broadcast_to(amplitude, (frames,) + amplitude.shape))
    results[mode] = (np.asarray(mask, np.float32), np.asarray(images[-1], np.float32))
  return results


_TITLES = {"none": "plain", "nearest": "nearest in front", "outline": "no fill at crossings"}


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
                   *, crop_margin: int | None = 12, panel_width: float = 1.6):
  """A grid: one row per comparison; per mode, its mask and its phosphenes.

  Args:
    comparisons: {row label: `compare_overlap_modes` result of one (H, W)
      pose}, every row with the same modes (column titles: the modes).
    crop_margin: show only the masks' non-zero area plus this many pixels
      (same crop for the whole figure); None shows the whole images.
    panel_width: width of one picture in inches.

  Returns:
    a matplotlib `Figure` (save it with `viz.save_figure`, or turn it into
    an array with `viz.figure_to_array` for `Report.image`).
  """
  modes = list(next(iter(comparisons.values())))
  box = (slice(None), slice(None))
  if crop_margin is not None:
    box = _crop_box([m for result in comparisons.values() for m, _ in result.values()],
                    crop_margin)
  h, w = next(iter(comparisons.values()))[modes[0]][0][box].shape
  rows, cols = len(comparisons), 2 * len(modes)
  fig = Figure(figsize=(panel_width * cols, (panel_width * h / w + 0.5) * rows), dpi=100)
  axes = fig.subplots(rows, cols, squeeze=False)
  for r, (label, result) in enumerate(comparisons.items()):
    for c, mode in enumerate(modes):
      for k, (kind, picture) in enumerate(zip(("mask", "phosphenes"), result[mode])):
        ax = axes[r, 2 * c + k]
        ax.imshow(picture[box], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(f"{_TITLES.get(mode, mode)}\n{kind}", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
        if c == 0 and k == 0:
          ax.set_ylabel(label, fontsize=8)
  fig.tight_layout(pad=0.4, w_pad=0.3, h_pad=0.6)
  return fig


def write_example_figure(path, sim, *, line_width: float = 5.0, frames: int = 10):
  """Writes the side-by-side picture of `CROSSING_CONTOUR` (docs/phosphene_readability.png).

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
    kwargs = dict(image_size=CROSSING_IMAGE_SIZE, line_width=line_width, fill_limbs=fill,
                  fill_torso=fill, frames=frames)
    plain = compare_overlap_modes(sim, CROSSING_CONTOUR, **kwargs)
    gap = compare_overlap_modes(sim, CROSSING_CONTOUR, overlap_gap=line_width,
                                modes=("nearest",), **kwargs)
    rows[label] = {"none": plain["none"], "nearest": plain["nearest"],
                   f"nearest, gap {line_width:g} px": gap["nearest"],
                   "outline": plain["outline"]}
  return viz.save_figure(overlap_figure(rows), path)
