"""Readability of triplet phosphenes where limbs overlap (the thesis's open problem).

The thesis found that in the triplet (contour) phosphene rendering an arm in
front of the body blends into the body's outline. `render_pose(...,
style=DrawStyle(overlap=...))` suppresses what lies behind a nearer limb
('nearest') or leaves crossings unfilled ('outline'); this module adds the
point-level version (`occluded_contour_points`: drop contour points hidden
behind a nearer limb before drawing) and the masks and phosphene stills of
the modes side by side (`compare_overlap_modes`; its figure is
`viz.overlap_figure`). Pure JAX: no figures here.

Depth order, farthest first: the torso polygon (`keypoints.TORSO_POLYGON`),
then `keypoints.LIMB_QUADS` in `LIMB_SEGMENTS` order (legs, then arms; later
= nearer).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from triplet_pose import keypoints as kp
from triplet_pose.phosphenes import geometry
from triplet_pose.phosphenes import pose

# Polygons in depth order: the torso, then every limb quad.
_POLYGONS: tuple[tuple[int, ...], ...] = (kp.TORSO_POLYGON,) + kp.LIMB_QUADS
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
    signed = geometry.polygon_signed_distance(xs, ys, contour[index][None])[0, 0]  # (26,)
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
  if not softness > 0:
    raise ValueError(f"softness must be positive, got {softness}")
  # Hidden points are zeroed there (they then hide nothing).
  contour, visible = pose.checked_points(contour, visible, kp.CONTOUR)
  batch = contour.shape[:-2]
  out = _occlusion_batch(contour.reshape((-1, kp.NUM_CONTOUR, 2)),
                         visible.reshape((-1, kp.NUM_CONTOUR)), float(softness))
  return out.reshape(batch + (kp.NUM_CONTOUR,))


def compare_overlap_modes(sim, contour, contour_visible=None, *,
                          image_size: tuple[int, int], style: pose.DrawStyle,
                          frames: int = 10,
                          modes: tuple[str, ...] = pose.OVERLAP_MODES
                          ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Masks and phosphene stills of one contour pose (or a batch) per overlap mode.

  Args:
    sim: a `Simulator`.
    contour: (..., 26, 2) contour points in pixels of the source image.
    contour_visible: (..., 26) visibility weights; default all 1.
    image_size: (H_img, W_img) of the source image.
    style: the drawing (line width, fills); its `overlap` is replaced by
      each mode, and its `overlap_gap` counts for 'nearest' only.
    frames: frames of constant stimulation before the still is taken (the
      tissue's activation builds up over frames).
    modes: which overlap modes, in order.

  Returns:
    {mode: (mask (..., H, W), phosphene image (..., H, W))}, numpy float32,
    in the order of `modes`.
  """
  if frames < 1:
    raise ValueError(f"frames must be >= 1, got {frames}")
  results = {}
  for mode in modes:
    mode_style = style.replace(overlap=mode,
                               overlap_gap=style.overlap_gap if mode == "nearest" else 0.0)
    mask = pose.render_pose({kp.CONTOUR.name: contour}, image_size=image_size,
                            output_size=sim.resolution,
                            visible={kp.CONTOUR.name: contour_visible}, style=mode_style)
    amplitude = sim.sample_stimulus(mask, rescale=True)
    images = sim.run(jnp.broadcast_to(amplitude, (frames,) + amplitude.shape))
    results[mode] = (np.asarray(mask, np.float32), np.asarray(images[-1], np.float32))
  return results
