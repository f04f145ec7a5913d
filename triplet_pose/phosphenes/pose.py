"""Pose to phosphenes: differentiable drawing of keypoints as an activation mask.

Joints (..., 16, 2) and contour points (..., 26, 2), in pixels of a source
image, are mapped to the simulator resolution (integer coordinates are pixel
centres: x -> (x + 0.5) * W / W_img - 0.5) and drawn as anti-aliased
primitives, each optional:

* joints as discs of `point_radius` pixels,
* the skeleton (`keypoints.SKELETON_EDGES`) and the contour
  (`keypoints.CONTOUR_EDGES`) as line segments `line_width` pixels wide,
* filled limb outlines: the quadrilateral of each `keypoints.LIMB_SEGMENTS`
  entry (medial and lateral point at both ends).

Coverage of a pixel is `clip(half_width + 0.5 - distance, 0, 1)` (a one
pixel ramp), so the mask is piecewise differentiable in the keypoints and
its gradient matches finite differences. Primitives are combined by a
maximum and weighted by the visibility of their keypoints (a primitive
counts only where all its keypoints are visible; weights in [0, 1] are
allowed). Any leading batch axes are handled with `vmap`; the result is
(..., H, W) in [0, 1], ready for `Simulator.sample_stimulus(mask,
rescale=True)`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from triplet_pose import keypoints as kp

_EPS = 1e-12  # Squared pixels; keeps sqrt differentiable on the primitive.

_SKELETON = np.asarray(kp.SKELETON_EDGES, np.int32)
_CONTOUR = np.asarray(kp.CONTOUR_EDGES, np.int32)
_LIMBS = np.asarray([(s["medial"][0], s["medial"][1], s["lateral"][1], s["lateral"][0])
                     for s in kp.LIMB_SEGMENTS.values()], np.int32)


def image_to_simulator_coordinates(points, *, image_size: tuple[int, int],
                                   output_size: tuple[int, int]):
  """Maps (..., 2) pixel coordinates between resolutions (pixel centres).

  Args:
    points: (..., 2) (x, y) in pixels of an image of `image_size` (H, W).
    image_size: (H_img, W_img) of the source image.
    output_size: (H, W) of the target (e.g. `sim.resolution`).
  """
  (h_img, w_img), (h, w) = image_size, output_size
  points = _float(points)
  scale = jnp.asarray([w / w_img, h / h_img], points.dtype)
  return (points + 0.5) * scale - 0.5


def _float(a):
  """As a jax array, float32 unless already floating (float64 stays)."""
  a = jnp.asarray(a)
  return a if jnp.issubdtype(a.dtype, jnp.floating) else a.astype(jnp.float32)


def _segment_distance(px, py, a, b):
  """Distance of pixel centres (H, 1), (1, W) from segments a-b, (E, 2) each."""
  ax, ay = a[:, 0, None, None], a[:, 1, None, None]
  dx, dy = (b - a)[:, 0, None, None], (b - a)[:, 1, None, None]
  length2 = dx * dx + dy * dy
  t = ((px - ax) * dx + (py - ay) * dy) / jnp.maximum(length2, _EPS)
  t = jnp.clip(t, 0.0, 1.0)
  ex, ey = px - (ax + t * dx), py - (ay + t * dy)
  return jnp.sqrt(ex * ex + ey * ey + _EPS)  # (E, H, W)


def _coverage(distance, half_width):
  return jnp.clip(half_width + 0.5 - distance, 0.0, 1.0)


def _inside_polygons(px, py, vertices):
  """Even-odd inside test of pixel centres for polygons (P, V, 2): (P, H, W)."""
  nxt = jnp.roll(vertices, -1, axis=1)
  vx, vy = vertices[..., 0, None, None], vertices[..., 1, None, None]
  nx, ny = nxt[..., 0, None, None], nxt[..., 1, None, None]
  straddles = (vy > py[None]) != (ny > py[None])
  denom = jnp.where(ny == vy, 1.0, ny - vy)
  x_cross = vx + (nx - vx) * (py[None] - vy) / denom
  crossings = jnp.sum(straddles & (px[None] < x_cross), axis=1)
  return crossings % 2 == 1


def _render_one(joints, joints_vis, contour, contour_vis, *, output_size,
                point_radius, line_width, draw_joints, draw_skeleton,
                draw_contour, fill_limbs):
  # All primitives share one distance computation over (segments, H, W):
  # discs are zero-length segments, and polygons use their edges' minimum
  # distance with the sign from the (gradient-free) inside test.
  h, w = output_size
  dtype = (joints if joints is not None else contour).dtype
  py = jnp.arange(h, dtype=dtype)[:, None]
  px = jnp.arange(w, dtype=dtype)[None, :]
  starts, ends, half_widths, weights = [], [], [], []

  def add(a, b, half_width, weight):
    starts.append(a)
    ends.append(b)
    half_widths.append(jnp.full(weight.shape, half_width, dtype))
    weights.append(weight)

  if joints is not None and draw_joints:
    add(joints, joints, point_radius, joints_vis)
  for points, vis, edges, draw in ((joints, joints_vis, _SKELETON, draw_skeleton),
                                   (contour, contour_vis, _CONTOUR, draw_contour)):
    if points is not None and draw:
      add(points[edges[:, 0]], points[edges[:, 1]], line_width / 2,
          vis[edges[:, 0]] * vis[edges[:, 1]])
  num_lines = sum(a.shape[0] for a in starts)
  polygons = contour is not None and fill_limbs
  if polygons:
    vertices = contour[_LIMBS]  # (P, V, 2)
    starts.append(vertices.reshape(-1, 2))
    ends.append(jnp.roll(vertices, -1, axis=1).reshape(-1, 2))
  if not starts:
    return jnp.zeros((h, w), dtype)
  dist = _segment_distance(px, py, jnp.concatenate(starts), jnp.concatenate(ends))
  layers = [jnp.zeros((1, h, w), dtype)]
  if num_lines:
    hw = jnp.concatenate(half_widths)[:, None, None]
    wgt = jnp.concatenate(weights)[:, None, None]
    layers.append(wgt * _coverage(dist[:num_lines], hw))
  if polygons:
    p, v = vertices.shape[:2]
    edge_dist = jnp.min(dist[num_lines:].reshape((p, v, h, w)), axis=1)
    inside = jax.lax.stop_gradient(_inside_polygons(px, py, vertices))
    signed = jnp.where(inside, -edge_dist, edge_dist)
    wgt = jnp.prod(contour_vis[_LIMBS], axis=1)[:, None, None]
    layers.append(wgt * jnp.clip(0.5 - signed, 0.0, 1.0))
  return jnp.max(jnp.concatenate(layers, axis=0), axis=0)


def _prepare(points, visible, count, name, image_size, output_size):
  points = _float(points)
  if points.shape[-2:] != (count, 2):
    raise ValueError(f"{name} must be (..., {count}, 2), got {points.shape}")
  if visible is None:
    visible = jnp.ones(points.shape[:-1], points.dtype)
  visible = jnp.asarray(visible, points.dtype)
  if visible.shape != points.shape[:-1]:
    raise ValueError(f"{name} visibility must be {points.shape[:-1]}, got {visible.shape}")
  # Hidden keypoints may hold NaN or junk: zero them without touching gradients.
  points = jnp.where(visible[..., None] > 0, points, 0.0)
  return image_to_simulator_coordinates(points, image_size=image_size,
                                        output_size=output_size), visible


def render_pose(joints=None, contour=None, *, image_size: tuple[int, int],
                output_size: tuple[int, int], joints_visible=None,
                contour_visible=None, point_radius: float = 1.5,
                line_width: float = 2.0, draw_joints: bool = True,
                draw_skeleton: bool = True, draw_contour: bool = True,
                fill_limbs: bool = False) -> jax.Array:
  """Draws a pose (or a batch) as an activation mask in [0, 1].

  Args:
    joints: (..., 16, 2) MPII joints (x, y) in source pixels, or None.
    contour: (..., 26, 2) contour points in source pixels, or None.
    image_size: (H_img, W_img) of the source image.
    output_size: (H, W) of the mask, usually `sim.resolution`.
    joints_visible: (..., 16) visibility weights; default all 1.
    contour_visible: (..., 26) visibility weights; default all 1.
    point_radius: joint disc radius in output pixels.
    line_width: line width in output pixels.
    draw_joints, draw_skeleton, draw_contour, fill_limbs: which primitives.

  Returns:
    (..., H, W) float32 mask.

  Raises:
    ValueError: if both poses are None or shapes disagree.
  """
  if joints is None and contour is None:
    raise ValueError("render_pose needs joints, contour or both")
  batch = None
  args = []
  for points, vis, count, name in ((joints, joints_visible, kp.NUM_JOINTS, "joints"),
                                   (contour, contour_visible, kp.NUM_CONTOUR, "contour")):
    if points is None:
      args += [None, None]
      continue
    p, v = _prepare(points, vis, count, name, image_size, output_size)
    if batch is not None and p.shape[:-2] != batch:
      raise ValueError(f"joints and contour batch shapes differ: {batch} vs {p.shape[:-2]}")
    batch = p.shape[:-2]
    args += [p.reshape((-1, count, 2)), v.reshape((-1, count))]
  masks = _render_batch(*args, output_size=tuple(int(v) for v in output_size),
                        point_radius=float(point_radius), line_width=float(line_width),
                        draw_joints=bool(draw_joints), draw_skeleton=bool(draw_skeleton),
                        draw_contour=bool(draw_contour), fill_limbs=bool(fill_limbs))
  return masks.reshape(batch + tuple(output_size))


@functools.partial(jax.jit, static_argnames=(
    "output_size", "point_radius", "line_width", "draw_joints", "draw_skeleton",
    "draw_contour", "fill_limbs"))
def _render_batch(joints, joints_vis, contour, contour_vis, **options):
  return jax.vmap(functools.partial(_render_one, **options))(
      joints, joints_vis, contour, contour_vis)


def pose_to_phosphenes(sim, state, joints=None, contour=None, *,
                       image_size: tuple[int, int], **render_kwargs):
  """Renders a pose, samples the stimulus and steps the simulator once.

  The mask value 1 maps to `sampling.stimulus_scale` amperes.

  Args:
    sim: a `Simulator`.
    state: its state, batch shape equal to the pose batch shape.
    joints, contour: as in `render_pose`.
    image_size: (H_img, W_img) of the source image.
    **render_kwargs: further `render_pose` options.

  Returns:
    (new state, phosphene image (..., H, W), activation mask (..., H, W)).
  """
  mask = render_pose(joints, contour, image_size=image_size,
                     output_size=sim.resolution, **render_kwargs)
  amplitude = sim.sample_stimulus(mask, rescale=True)
  state, image = sim.step(state, amplitude)
  return state, image, mask
