"""Several people as one activation mask: every person drawn, nearer ones hiding farther ones.

Each person is drawn by `pose.render_pose` in any `DrawStyle` (skeleton,
contour, fills...). People are composed from the nearest to the farthest:
a person's drawing shows only where no nearer person's body is, so a
farther person's contour disappears behind a nearer person's fill. A body
is the person's filled limbs and torso when contour points are given, else
its skeleton drawn `body_width` pixels wide.

Two options keep people apart (`SceneStyle`):

* `gap`: a nearer body, grown by `gap` pixels, hides what lies behind: a
  dark outline that separates it from the person behind;
* `depth_brightness`: the person of depth rank r (0 = nearest) is drawn at
  `depth_brightness ** r` of full brightness.

Everything is jax and differentiable in the keypoints; persons are a static
leading axis with a `persons_valid` mask, as in scene batches.
`scene_stimulus` draws only the pixels the simulator reads (video).
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


def _body_style(has_contour: bool, style: SceneStyle) -> pose_lib.DrawStyle:
  """The silhouette that hides people behind, grown by `style.gap` on every side.

  Filled limbs and torso (with the skeleton for head and neck) when contour
  points are given, else a wide skeleton; lines and discs widen by 2 x gap,
  which grows the drawn region by `gap` pixels, a dilation that also holds
  where only some pixels are drawn (`scene_stimulus`).
  """
  grow = 2.0 * style.gap
  if has_contour:
    return pose_lib.DrawStyle(point_radius=style.body_width / 4 + style.gap,
                              line_width=max(style.body_width / 2, 1.0) + grow,
                              draw_contour=True, fill_limbs=True, fill_torso=True)
  return pose_lib.DrawStyle(point_radius=style.body_width / 2 + style.gap,
                            line_width=style.body_width + grow, draw_contour=False)


def _bodies(points, visible, *, image_size, output_size, style: SceneStyle):
  """(P, H, W) silhouettes (`_body_style`)."""
  body = _body_style(points.get(kp.CONTOUR.name) is not None, style)
  return pose_lib.render_pose(points, image_size=image_size, output_size=output_size,
                              visible=visible, style=body)


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
  drawn = pose_lib.render_pose(points, image_size=image_size, output_size=output_size,
                               visible=visible, style=style)  # (P, H, W)
  bodies = _bodies(points, visible, image_size=image_size, output_size=output_size,
                   style=scene_style)
  return _compose(drawn, bodies, *_valid_and_depth(points, persons_valid, depth),
                  scene_style=scene_style)


def scene_stimulus(points: Mapping[str, jax.Array], pixels, *, image_size: tuple[int, int],
                   visible: Mapping[str, jax.Array] | None = None,
                   persons_valid: jax.Array | None = None, depth: jax.Array | None = None,
                   style: pose_lib.DrawStyle = pose_lib.DrawStyle(),
                   scene_style: SceneStyle = SceneStyle()) -> jax.Array:
  """Amplitude per phosphene (N,) of a scene: `render_scene` drawn only at the
  pixels the simulator reads (`pose.pose_stimulus`'s fast path, for video).

  Args:
    points, image_size, visible, persons_valid, depth, style, scene_style:
      as in `render_scene`.
    pixels: the simulator's `sample_pixels()`.
  """
  at = functools.partial(pose_lib.render_pose_at, points, pixels.rows, pixels.cols,
                         image_size=image_size, output_size=pixels.resolution, visible=visible)
  body = _body_style(points.get(kp.CONTOUR.name) is not None, scene_style)
  values = _compose(at(style=style), at(style=body),
                    *_valid_and_depth(points, persons_valid, depth), scene_style=scene_style)
  return pixels.gather(values) * pixels.stimulus_scale


def _valid_and_depth(points, persons_valid, depth):
  p = next(v for v in points.values() if v is not None).shape[0]
  valid = jnp.ones(p) if persons_valid is None else jnp.asarray(persons_valid, jnp.float32)
  return valid, (jnp.arange(p) if depth is None else jnp.asarray(depth))


@functools.partial(jax.jit, static_argnames=("scene_style",))
def _compose(drawn, bodies, valid, depth, *, scene_style: SceneStyle):
  """Near to far: each person's drawing (P, ...) where no nearer body is."""
  order = jnp.argsort(jnp.where(valid > 0, depth, jnp.iinfo(jnp.int32).max), stable=True)
  rank = jnp.argsort(order)  # position of each person in the near-to-far order
  brightness = scene_style.depth_brightness ** rank.astype(jnp.float32)

  def step(free, i):
    shown = drawn[i] * free * valid[i] * brightness[i]
    return free * (1.0 - bodies[i] * valid[i]), shown

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
