"""Several people as one activation mask: every person drawn, nearer ones hiding farther ones.

Each person is drawn by `pose.render_pose` in any `DrawStyle` (skeleton,
contour, fills...). People are composed from the nearest to the farthest:
a person's drawing shows only where no nearer person's body is, so a
farther person's contour disappears behind a nearer person's fill. A body
is the person's filled limbs and torso when contour points are given, else
its skeleton drawn `body_width` pixels wide.

Two options keep people apart (`SceneStyle`):

* `gap`: a nearer body also hides what lies within `gap` pixels of it: a
  dark outline that separates it from the person behind;
* `depth_brightness`: the person of depth rank r (0 = nearest) is drawn at
  `depth_brightness ** r` of full brightness.

Everything is jax and differentiable in the keypoints except the gap's
max-pool (piecewise, as `jnp.max`); persons are a static leading axis with a
`persons_valid` mask, as in scene batches.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Mapping

import jax
import jax.numpy as jnp

from triplet_pose import keypoints as kp
from triplet_pose.phosphenes import pose as pose_lib


@dataclasses.dataclass(frozen=True)
class SceneStyle:
  """How people are kept apart (frozen, hashable: a jit static).

  Attributes:
    gap: pixels around a nearer body that also hide farther people.
    depth_brightness: brightness factor per depth rank, in (0, 1].
    body_width: width in output pixels of a skeleton-only body (the
      silhouette that hides people behind when no contour is given).

  Raises:
    ValueError: for a negative gap or width, or a factor outside (0, 1].
  """
  gap: float = 0.0
  depth_brightness: float = 1.0
  body_width: float = 6.0

  def __post_init__(self):
    if self.gap < 0 or self.body_width < 0:
      raise ValueError(f"gap and body_width must be >= 0, got {self.gap}, {self.body_width}")
    if not 0 < self.depth_brightness <= 1:
      raise ValueError(f"depth_brightness must be in (0, 1], got {self.depth_brightness}")


def _bodies(points, visible, *, image_size, output_size, style: SceneStyle):
  """(P, H, W) silhouettes: filled limbs and torso, or a wide skeleton."""
  if points.get(kp.CONTOUR.name) is not None:
    body = pose_lib.DrawStyle(draw_joints=False, draw_skeleton=True,
                              line_width=max(style.body_width / 2, 1.0), draw_contour=True,
                              fill_limbs=True, fill_torso=True)
  else:
    body = pose_lib.DrawStyle(draw_joints=False, draw_skeleton=True,
                              line_width=style.body_width, draw_contour=False)
  return pose_lib.render_pose(points, image_size=image_size, output_size=output_size,
                              visible=visible, style=body)


def _dilate(mask: jax.Array, radius: float) -> jax.Array:
  size = 2 * int(round(radius)) + 1
  if size <= 1:
    return mask
  return jax.lax.reduce_window(mask, -jnp.inf, jax.lax.max, (1, size, size), (1, 1, 1), "SAME")


def render_scene(points: Mapping[str, jax.Array], *, image_size: tuple[int, int],
                 output_size: tuple[int, int], visible: Mapping[str, jax.Array] | None = None,
                 persons_valid: jax.Array | None = None, depth: jax.Array | None = None,
                 style: pose_lib.DrawStyle = pose_lib.DrawStyle(),
                 scene_style: SceneStyle = SceneStyle()) -> jax.Array:
  """Draws every person of one image as one activation mask in [0, 1].

  Args:
    points: {'joints': (P, 16, 2), 'contour': (P, 26, 2)}, either or both,
      in source pixels.
    image_size: (H_img, W_img) of the source image.
    output_size: (H, W) of the mask.
    visible: {set name: (P, K)} visibility weights (default all visible).
    persons_valid: (P,) which rows are persons (default all).
    depth: (P,) depth rank, 0 = nearest (default: the row order).
    style: how each person is drawn.
    scene_style: how people are kept apart.

  Returns:
    (H, W) float32 mask.
  """
  first = next(v for v in points.values() if v is not None)
  p = first.shape[0]
  valid = jnp.ones(p) if persons_valid is None else jnp.asarray(persons_valid, jnp.float32)
  depth = jnp.arange(p) if depth is None else jnp.asarray(depth)
  drawn = pose_lib.render_pose(points, image_size=image_size, output_size=output_size,
                               visible=visible, style=style)  # (P, H, W)
  bodies = _bodies(points, visible, image_size=image_size, output_size=output_size,
                   style=scene_style)
  return _compose(drawn, bodies, valid, depth, scene_style=scene_style)


@functools.partial(jax.jit, static_argnames=("scene_style",))
def _compose(drawn, bodies, valid, depth, *, scene_style: SceneStyle):
  order = jnp.argsort(jnp.where(valid > 0, depth, jnp.iinfo(jnp.int32).max), stable=True)
  hiding = _dilate(bodies, scene_style.gap) * valid[:, None, None]
  rank = jnp.argsort(order)  # position of each person in the near-to-far order
  brightness = scene_style.depth_brightness ** rank.astype(jnp.float32)

  def step(free, i):
    shown = drawn[i] * free * valid[i] * brightness[i]
    return free * (1.0 - hiding[i]), shown

  _, layers = jax.lax.scan(step, jnp.ones(drawn.shape[1:], drawn.dtype), order)
  return jnp.max(layers, axis=0)


def scene_to_phosphenes(sim, state, points: Mapping[str, jax.Array], *,
                        image_size: tuple[int, int], **kwargs):
  """Renders a scene, samples the stimulus and steps the simulator once.

  Args:
    sim: a `Simulator`; state: its state (no batch axis).
    points, image_size: as in `render_scene`; kwargs: its other options.

  Returns:
    (new state, phosphene image (H, W), activation mask (H, W)).
  """
  mask = render_scene(points, image_size=image_size, output_size=sim.resolution, **kwargs)
  state, image = sim.step(state, sim.sample_stimulus(mask, rescale=True))
  return state, image, mask
