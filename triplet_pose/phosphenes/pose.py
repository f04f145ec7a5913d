"""Pose to phosphenes: differentiable drawing of keypoints as an activation mask.

A pose is a dict keyed by keypoint set, `{'joints': (..., 16, 2),
'contour': (..., 26, 2)}` (either or both), in pixels of a source image.
The points are mapped to the simulator resolution (integer coordinates are
pixel centres: x -> (x + 0.5) * W / W_img - 0.5) and drawn as anti-aliased
primitives, each switched by one frozen, hashable `DrawStyle`:

* joints as discs of `point_radius` pixels,
* the skeleton (`keypoints.JOINTS.edges`) and the contour
  (`keypoints.CONTOUR.edges`) as line segments `line_width` pixels wide,
* filled limb outlines (`keypoints.LIMB_QUADS`: medial and lateral point at
  both ends of each `keypoints.LIMB_SEGMENTS` entry).

Coverage of a pixel is `clip(half_width + 0.5 - distance, 0, 1)` (a one
pixel ramp), so the mask is piecewise differentiable in the keypoints and
its gradient matches finite differences. Primitives are combined by a
maximum and weighted by the visibility of their keypoints (a primitive
counts only where all its keypoints are visible; weights in [0, 1] are
allowed). Any leading batch axes are handled with `vmap`; the result is
(..., H, W) in [0, 1], ready for `Simulator.sample_stimulus(mask,
rescale=True)`.

Overlapping limbs (`DrawStyle.overlap`): the plain drawing blends an arm in front of
the body into the body's outline (the thesis's open problem). With
'nearest', the contour primitives get a depth order (`keypoints.TORSO_POLYGON`
farthest, then `LIMB_SEGMENTS` in order, later = nearer) and each is
multiplied by the soft coverage left free by the union of the nearer
polygons, so a nearer limb keeps its outline and what lies behind it
disappears; `overlap_gap` widens that to a dark halo around the nearer limb.
With 'outline', fills are drawn only where exactly one filled polygon
(limb, or torso with `fill_torso`) covers the pixel, so crossing limbs stay
separable outlines. Both are products of anti-aliased coverages, so the
mask stays differentiable. `readability.py` has the point-level version
and the side-by-side comparison.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from triplet_pose import keypoints as kp
from triplet_pose.phosphenes import geometry
from triplet_pose.phosphenes import sampling

_SKELETON = np.asarray(kp.JOINTS.edges, np.int32)
_CONTOUR = np.asarray(kp.CONTOUR.edges, np.int32)
_LIMBS = np.asarray(kp.LIMB_QUADS, np.int32)
# The torso polygon's sides are the drawn armpit-hip edges, so an arm hanging
# beside the body does not count as overlapping it.
_TORSO = np.asarray([kp.TORSO_POLYGON], np.int32)
# Depth layer of every contour edge: 0 the torso, 1 + i limb segment i.
_CONTOUR_LAYER = np.asarray(
    [1 + i for i in range(len(kp.LIMB_SEGMENTS)) for _ in range(2)]
    + [0] * len(kp.CONTOUR_TORSO_EDGES), np.int32)
assert len(_CONTOUR_LAYER) == len(_CONTOUR)
# Polygons (torso, limbs) that share a corner meet at a joint: the gap of
# 'nearest' is not cut between them, or every joint would show one.
_POLYGON_POINTS = [set(kp.TORSO_POLYGON)] + [set(q) for q in kp.LIMB_QUADS]
_ADJACENT = np.asarray([[bool(a & b) for b in _POLYGON_POINTS] for a in _POLYGON_POINTS])
OVERLAP_MODES: tuple[str, ...] = ("none", "nearest", "outline")


@dataclasses.dataclass(frozen=True)
class DrawStyle:
  """How a pose is drawn as an activation mask (frozen, hashable: a jit static).

  Attributes:
    point_radius: joint disc radius in output pixels.
    line_width: line width in output pixels.
    draw_joints, draw_skeleton, draw_contour: which primitives; a keypoint
      set that is not given draws nothing whatever its switches.
    fill_limbs: fill the limb quads (`keypoints.LIMB_QUADS`): body width.
    fill_torso: also fill the torso polygon (`keypoints.TORSO_POLYGON`).
    overlap: where contour primitives overlap: 'none' draws everything;
      'nearest' suppresses contour lines and fills under nearer limbs (depth
      order: torso, then `LIMB_SEGMENTS` in order, later = nearer);
      'outline' fills only where one filled polygon alone covers the pixel
      (lines unchanged: without fills it equals 'none'). Joints and
      skeleton are never suppressed.
    overlap_gap: with 'nearest', a nearer polygon also hides what lies
      within this many pixels of it (a dark halo that separates it from
      what is behind), except for polygons that meet it at a joint.

  Raises:
    ValueError: for an unknown `overlap`, or a gap without 'nearest'.
  """
  point_radius: float = 1.5
  line_width: float = 2.0
  draw_joints: bool = True
  draw_skeleton: bool = True
  draw_contour: bool = True
  fill_limbs: bool = False
  fill_torso: bool = False
  overlap: str = "none"
  overlap_gap: float = 0.0

  def __post_init__(self):
    if self.overlap not in OVERLAP_MODES:
      raise ValueError(f"overlap must be one of {OVERLAP_MODES}, got {self.overlap!r}")
    if self.overlap_gap < 0 or (self.overlap_gap > 0 and self.overlap != "nearest"):
      raise ValueError(f"overlap_gap must be >= 0 and needs overlap='nearest', got "
                       f"{self.overlap_gap} with overlap={self.overlap!r}")

  def replace(self, **changes) -> "DrawStyle":
    """A copy with `changes` (checked like a new style)."""
    return dataclasses.replace(self, **changes)


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


def _free_of_nearer(cover, dilated=None):
  """prod over nearer layers j > k of (1 - cover_j), per layer k; then 1 (top).

  With `dilated` (the polygons grown by the gap), a nearer polygon that does
  not share a corner with layer k hides it over its dilated extent.
  """
  ones = jnp.ones_like(cover[0])
  free = []
  for k in range(cover.shape[0]):
    f = ones
    for j in range(k + 1, cover.shape[0]):
      near = cover[j] if dilated is None or _ADJACENT[k, j] else dilated[j]
      f = f * (1.0 - near)
    free.append(f)
  return jnp.stack(free + [ones])  # (L + 1, H, W)


def _covered_alone(cover):
  """cover_k * prod over j != k of (1 - cover_j): soft 'only k covers it'."""
  before, running = [], jnp.ones_like(cover[0])
  for k in range(cover.shape[0]):
    before.append(running)
    running = running * (1.0 - cover[k])
  return cover * jnp.stack(before) * _free_of_nearer(cover)[:-1]


def _render_one(joints, joints_vis, contour, contour_vis, *, px, py, style: DrawStyle):
  # All primitives share one distance computation over (segments, *pixels):
  # discs are zero-length segments, and polygons use their edges' minimum
  # distance with the sign from the (gradient-free) inside test. The pixels
  # are a grid, px (1, W) and py (H, 1), or any points, e.g. (1, N) each.
  dtype = (joints if joints is not None else contour).dtype
  px, py = px.astype(dtype), py.astype(dtype)
  shape = jnp.broadcast_shapes(px.shape, py.shape)
  top = 1 + len(_LIMBS)  # Depth layer above every contour layer: never occluded.
  starts, ends, half_widths, weights, depth = [], [], [], [], []

  def add(a, b, half_width, weight, layer):
    starts.append(a)
    ends.append(b)
    half_widths.append(jnp.full(weight.shape, half_width, dtype))
    weights.append(weight)
    depth.append(np.broadcast_to(layer, weight.shape))

  if joints is not None and style.draw_joints:
    add(joints, joints, style.point_radius, joints_vis, top)
  for points, vis, edges, draw, layer in (
      (joints, joints_vis, _SKELETON, style.draw_skeleton, top),
      (contour, contour_vis, _CONTOUR, style.draw_contour, _CONTOUR_LAYER)):
    if points is not None and draw:
      add(points[edges[:, 0]], points[edges[:, 1]], style.line_width / 2,
          vis[edges[:, 0]] * vis[edges[:, 1]], layer)
  num_lines = sum(a.shape[0] for a in starts)
  # Polygons in depth order (torso first): they are fills, occluders or both.
  polygons = []
  if contour is not None and (style.fill_limbs or style.fill_torso or style.overlap != "none"):
    torso = style.overlap == "nearest" or style.fill_torso
    polygons = [_TORSO, _LIMBS] if torso else [_LIMBS]
  for index in polygons:
    vertices = contour[index]  # (P, V, 2)
    starts.append(vertices.reshape(-1, 2))
    ends.append(jnp.roll(vertices, -1, axis=1).reshape(-1, 2))
  if not starts:
    return jnp.zeros(shape, dtype)
  dist = geometry.segment_distance(px, py, jnp.concatenate(starts), jnp.concatenate(ends))
  layers = [jnp.zeros((1,) + shape, dtype)]
  lines = fills = None
  if num_lines:
    hw = jnp.concatenate(half_widths)[:, None, None]
    wgt = jnp.concatenate(weights)[:, None, None]
    lines = wgt * geometry.coverage(dist[:num_lines], hw)
  signed, wgt, offset = [], [], num_lines
  for index in polygons:
    signed.append(geometry.polygon_signed_distance(px, py, contour[index],
                                          dist[offset:offset + index.size]))
    offset += index.size
    wgt.append(jnp.prod(contour_vis[index], axis=1)[:, None, None])
  if polygons:
    signed, wgt = jnp.concatenate(signed), jnp.concatenate(wgt)
    cover = wgt * jnp.clip(0.5 - signed, 0.0, 1.0)  # (layers, H, W): [torso,] limbs.
    # Which layers are filled: the limbs, the torso, or both.
    filled = np.asarray([style.fill_torso] * (len(polygons) == 2)
                        + [style.fill_limbs] * len(_LIMBS))
    if style.overlap == "nearest":
      dilated = (wgt * jnp.clip(0.5 + style.overlap_gap - signed, 0.0, 1.0)
                 if style.overlap_gap > 0 else None)
      free = _free_of_nearer(cover, dilated)
      if lines is not None:
        lines = lines * free[np.concatenate(depth)]
      fills = (cover * free[:-1])[filled]
    elif style.overlap == "outline" and filled.any():
      fills = _covered_alone(cover[filled])  # Unfilled polygons do not count.
    elif style.overlap == "none":
      fills = cover[filled]
  layers += [x for x in (lines, fills) if x is not None]
  return jnp.max(jnp.concatenate(layers, axis=0), axis=0)


def checked_points(points, visible, keypoint_set: kp.KeypointSet):
  """Validated float points (..., K, 2) and visibility (..., K) of one keypoint set.

  Hidden keypoints may hold NaN or junk: they are set to 0 without touching
  the gradients of the visible ones.

  Args:
    points: (..., K, 2) array-like, K = `keypoint_set.size`.
    visible: (..., K) weights, or None for all 1.
    keypoint_set: `keypoints.JOINTS` or `keypoints.CONTOUR`.

  Raises:
    ValueError: on a shape that does not fit the set.
  """
  points, name, count = _float(points), keypoint_set.name, keypoint_set.size
  if points.shape[-2:] != (count, 2):
    raise ValueError(f"{name} must be (..., {count}, 2), got {points.shape}")
  if visible is None:
    visible = jnp.ones(points.shape[:-1], points.dtype)
  visible = jnp.asarray(visible, points.dtype)
  if visible.shape != points.shape[:-1]:
    raise ValueError(f"{name} visibility must be {points.shape[:-1]}, got {visible.shape}")
  return jnp.where(visible[..., None] > 0, points, 0.0), visible


def _prepare(points, visible, image_size, output_size):
  """Checked points in output pixels, flattened to one batch axis, and the batch shape."""
  visible = dict(visible or {})
  unknown = (set(points) | set(visible)) - {kp.JOINTS.name, kp.CONTOUR.name}
  if unknown or not points:
    raise ValueError(f"render_pose takes {{'joints': ..., 'contour': ...}} (either or both), "
                     f"got the keys {sorted(points)} and visibility keys {sorted(visible)}")
  batch = None
  args = []
  for keypoint_set in (kp.JOINTS, kp.CONTOUR):
    if points.get(keypoint_set.name) is None:
      args += [None, None]
      continue
    p, v = checked_points(points[keypoint_set.name], visible.get(keypoint_set.name),
                          keypoint_set)
    if batch is not None and p.shape[:-2] != batch:
      raise ValueError(f"joints and contour batch shapes differ: {batch} vs {p.shape[:-2]}")
    batch = p.shape[:-2]
    p = image_to_simulator_coordinates(p, image_size=image_size, output_size=output_size)
    args += [p.reshape((-1, keypoint_set.size, 2)), v.reshape((-1, keypoint_set.size))]
  return args, batch


def render_pose(points: Mapping[str, jax.Array], *, image_size: tuple[int, int],
                output_size: tuple[int, int],
                visible: Mapping[str, jax.Array] | None = None,
                style: DrawStyle = DrawStyle()) -> jax.Array:
  """Draws a pose (or a batch) as an activation mask in [0, 1].

  Args:
    points: {'joints': (..., 16, 2), 'contour': (..., 26, 2)}, either or
      both, (x, y) in source pixels.
    image_size: (H_img, W_img) of the source image.
    output_size: (H, W) of the mask, usually `sim.resolution`.
    visible: {keypoint set name: (..., K) visibility weights}; a set not in
      it is all visible.
    style: what is drawn and how (`DrawStyle`).

  Returns:
    (..., H, W) float32 mask.

  Raises:
    ValueError: for no points, an unknown keypoint set, or shapes that
      disagree.
  """
  args, batch = _prepare(points, visible, image_size, output_size)
  h, w = (int(v) for v in output_size)
  grid = (jnp.arange(w, dtype=jnp.float32)[None, :], jnp.arange(h, dtype=jnp.float32)[:, None])
  return _render_batch(*args, *grid, style=style).reshape(batch + (h, w))


def render_pose_at(points: Mapping[str, jax.Array], rows, cols, *,
                   image_size: tuple[int, int], output_size: tuple[int, int],
                   visible: Mapping[str, jax.Array] | None = None,
                   style: DrawStyle = DrawStyle()) -> jax.Array:
  """`render_pose(...)[..., rows, cols]` without drawing the rest of the mask.

  What a simulator that samples the mask at its phosphenes' centre pixels
  needs: N values instead of H * W (the simulator's
  `centre_rows`/`centre_cols`), the same numbers and gradients.

  Args:
    points, image_size, output_size, visible, style: as in `render_pose`.
    rows, cols: (N,) integer pixel coordinates in the (H, W) mask.

  Returns:
    (..., N) float32 mask values.
  """
  args, batch = _prepare(points, visible, image_size, output_size)
  px = jnp.asarray(cols, jnp.float32)[None, :]
  py = jnp.asarray(rows, jnp.float32)[None, :]
  return _render_batch(*args, px, py, style=style, sequential=True).reshape(
      batch + (px.shape[1],))


@functools.partial(jax.jit, static_argnames=("style", "sequential"))
def _render_batch(joints, joints_vis, contour, contour_vis, px, py, *, style,
                  sequential: bool = False):
  one = functools.partial(_render_one, px=px, py=py, style=style)
  if sequential:
    # One pose at a time: its (segments, pixels) distances stay in cache;
    # vmapped, a batch of 8 took 4x longer per pose on a 2-core CPU.
    return jax.lax.map(lambda args: one(*args), (joints, joints_vis, contour, contour_vis))
  return jax.vmap(one)(joints, joints_vis, contour, contour_vis)


def pose_stimulus(points: Mapping[str, jax.Array], pixels: sampling.SamplePixels, *,
                  image_size: tuple[int, int],
                  visible: Mapping[str, jax.Array] | None = None,
                  style: DrawStyle = DrawStyle()) -> jax.Array:
  """Amplitude per phosphene (..., N) of a drawn pose; mask 1 = `stimulus_scale` amperes.

  Equals `sim.sample_stimulus(render_pose(...), rescale=True)` with
  `pixels = sim.sample_pixels()`, but draws the mask only at the pixels the
  simulator reads (`render_pose_at`): a few thousand instead of H * W, what
  makes a pose cheap to simulate at high resolution.

  Args:
    points, image_size, visible, style: as in `render_pose`.
    pixels: the simulator's `sample_pixels()` (computed once, outside jit).
  """
  values = render_pose_at(points, pixels.rows, pixels.cols, image_size=image_size,
                          output_size=pixels.resolution, visible=visible, style=style)
  return pixels.gather(values) * pixels.stimulus_scale


def pose_to_phosphenes(sim, state, points: Mapping[str, jax.Array], *,
                       image_size: tuple[int, int],
                       visible: Mapping[str, jax.Array] | None = None,
                       style: DrawStyle = DrawStyle()):
  """Renders a pose, samples the stimulus and steps the simulator once.

  The mask value 1 maps to `sampling.stimulus_scale` amperes.

  Args:
    sim: a `Simulator`.
    state: its state, batch shape equal to the pose batch shape.
    points, visible, style: as in `render_pose`.
    image_size: (H_img, W_img) of the source image.

  Returns:
    (new state, phosphene image (..., H, W), activation mask (..., H, W)).
  """
  mask = render_pose(points, image_size=image_size, output_size=sim.resolution,
                     visible=visible, style=style)
  amplitude = sim.sample_stimulus(mask, rescale=True)
  state, image = sim.step(state, amplitude)
  return state, image, mask
