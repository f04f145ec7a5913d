"""On-device augmentation: pure JAX, vmapped over the batch, jitted with the train step.

Each example gets its own random affine (rotation about the crop centre,
scaling, translation, optional horizontal flip) applied to the image and,
through the very same matrix, to its joints and contour points; the flip
also swaps left and right labels (`keypoints.flip_permutation`). Keypoints
that leave the frame become invisible. The PCKh normaliser scales with the
image, and `crop_to_original` absorbs the inverse affine, so a prediction on
the augmented image still maps back to the original photograph. Colour
jitter (brightness, contrast, saturation) follows.

The image may come in as uint8 [0, 255] or float [0, 1]; it leaves as
float32 in [0, 1], the model's input format.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from triplet_pose import keypoints as kp
from triplet_pose import transforms

# Keys with one entry per example that the augmentation changes; any other
# key of the batch passes through untouched.
GEOMETRIC_KEYS = ("image", "joints", "joints_visible", "contour", "contour_visible", "head_size",
                  "crop_to_original")


def sample_affine(rng: jax.Array, config: ml_collections.ConfigDict, *, height: int,
                  width: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """One random (2, 3) affine, whether it flips, and its scale."""
  k_rot, k_scale, k_shift, k_flip = jax.random.split(rng, 4)
  max_angle = np.deg2rad(config.rotation_degrees)
  angle = jax.random.uniform(k_rot, (), minval=-max_angle, maxval=max_angle)
  lo, hi = config.scale_range
  scale = jax.random.uniform(k_scale, (), minval=lo, maxval=hi)
  shift = (jax.random.uniform(k_shift, (2,), minval=-1.0, maxval=1.0)
           * config.translation_fraction * jnp.array([width, height], jnp.float32))
  center = jnp.array([(width - 1) / 2, (height - 1) / 2], jnp.float32)
  affine = transforms.rotation_affine(angle=angle, scale=scale, center=center, translation=shift)
  flip = jax.random.uniform(k_flip, ()) < config.flip_probability
  flipped = transforms.compose_affines(transforms.flip_affine(jnp.float32(width)), affine)
  return jnp.where(flip, flipped, affine), flip, scale


def flip_labels(values: jax.Array, flip: jax.Array, keypoint_set: kp.KeypointSet, *,
                axis: int = -1) -> jax.Array:
  """`values` with the keypoint axis permuted left <-> right where `flip`.

  The keypoint axis is `axis` (-1 for (..., K) masks, -2 for (..., K, 2)
  points), so leading axes (the persons of a scene) keep their order.
  """
  perm = np.asarray(keypoint_set.flip_permutation)
  return jnp.where(flip, jnp.take(values, perm, axis=axis), values)


def _move_keypoints(points, visible, affine, flip, *, keypoint_set, height, width):
  moved = transforms.apply_affine(affine, points.astype(jnp.float32))
  moved = flip_labels(moved, flip, keypoint_set, axis=-2)
  visible = flip_labels(visible, flip, keypoint_set)
  inside = transforms.in_frame(moved, height=height, width=width)
  return moved, visible * inside.astype(visible.dtype)


def color_jitter(image: jax.Array, rng: jax.Array, strength: float) -> jax.Array:
  """Random brightness, contrast and saturation in [1 - s, 1 + s], clipped to [0, 1]."""
  if strength <= 0:
    return image
  b, c, s = jax.random.uniform(rng, (3,), minval=1 - strength, maxval=1 + strength)
  image = image * b
  # An explicit weighted sum: a (H, W, 3) @ (3,) product is slow on CPU.
  gray = 0.299 * image[..., 0] + 0.587 * image[..., 1] + 0.114 * image[..., 2]
  image = gray[..., None] + (image - gray[..., None]) * s
  image = (image - gray.mean()) * c + gray.mean()
  return jnp.clip(image, 0.0, 1.0)


def is_flip_only(config: ml_collections.ConfigDict) -> bool:
  """Whether `config` moves pixels only by mirroring (no rotation, scale or shift)."""
  return (float(config.rotation_degrees) == 0.0 and tuple(config.scale_range) == (1.0, 1.0)
          and float(config.translation_fraction) == 0.0)


class Move(NamedTuple):
  """One geometric augmentation: the (2, 3) affine, whether it mirrors (the
  left/right labels swap), and its scale (normalisers follow)."""
  affine: jax.Array
  flip: jax.Array
  scale: jax.Array


def transform_example(example: dict[str, jax.Array], move: Move, *, color_rng: jax.Array,
                      config: ml_collections.ConfigDict) -> dict[str, jax.Array]:
  """Applies a given `move` and random colour jitter to one example.

  Keypoints may carry leading axes ((P, K, 2) for the persons of a scene):
  every point goes through the same affine, and a flip permutes the
  keypoint axis only. With `is_flip_only(config)` the image is mirrored
  rather than warped, so `move` must then be the identity or the mirror
  (as `sample_affine` draws it).
  """
  image = transforms.to_float_image(example["image"])
  height, width = image.shape[:2]
  affine, flip, scale = move
  out = dict(example)
  # Colour first, then the warp: the other order lets XLA fuse the warp's
  # gathers into every use by the jitter and recompute them (5x slower on
  # CPU); the fill outside the frame stays exactly `fill_value`.
  image = color_jitter(image, color_rng, config.color_jitter)
  if is_flip_only(config):
    # The affine is the identity or the mirror: the warp's result, exactly,
    # without its gathers (a large part of the demo's step on the CPU).
    out["image"] = jnp.where(flip, image[:, ::-1], image)
  else:
    out["image"] = transforms.warp_image(image, affine, out_height=height, out_width=width,
                                         fill=config.get("fill_value", 0.0))
  for kset in kp.KEYPOINT_SETS.values():
    if kset.name in example:
      out[kset.name], out[kset.visible_key] = _move_keypoints(
          example[kset.name], example[kset.visible_key], affine, flip,
          keypoint_set=kset, height=height, width=width)
  if "head_size" in example:
    out["head_size"] = example["head_size"] * scale
  if "crop_to_original" in example:
    out["crop_to_original"] = transforms.compose_affines(
        example["crop_to_original"].astype(jnp.float32), transforms.invert_affine(affine))
  return out


def augment_example(example: dict[str, jax.Array], rng: jax.Array,
                    config: ml_collections.ConfigDict) -> dict[str, jax.Array]:
  """Augments one example (no batch axis); see the module docstring."""
  height, width = example["image"].shape[:2]
  k_affine, k_color = jax.random.split(rng)
  affine, flip, scale = sample_affine(k_affine, config, height=height, width=width)
  return transform_example(example, Move(affine, flip, scale), color_rng=k_color, config=config)


def augment_batch(batch: dict[str, jax.Array], rng: jax.Array,
                  config: ml_collections.ConfigDict) -> dict[str, jax.Array]:
  """Augments every example of a batch with its own randomness (jittable).

  Args:
    batch: dict with `image` (B, H, W, C) uint8 or float in [0, 1], and any of
      `joints` (B, 16, 2) + `joints_visible` (B, 16), `contour` (B, 26, 2) +
      `contour_visible` (B, 26), `head_size` (B,), `crop_to_original`
      (B, 2, 3). Other keys pass through unchanged.
    rng: a PRNG key (fold in the step number outside).
    config: `config.augment` (triplet_pose/config.py). With `enabled` False only
      the image is converted to float.

  Returns:
    The batch with `image` float32 in [0, 1] and keypoints transformed.
  """
  if not config.enabled:
    return {**batch, "image": transforms.to_float_image(batch["image"])}
  moving = {k: v for k, v in batch.items() if k in GEOMETRIC_KEYS}
  # Jitted here too (inlined inside a caller's jit) so that eager calls are
  # one compiled program, not hundreds of dispatched ops.
  moved = _augment_jit(moving, rng, Params.from_config(config))
  return {**batch, **moved}


class Params(tuple):
  """The augmentation settings as a hashable (static) jit argument
  (`scene_augment` jits with it too)."""

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> "Params":
    return cls((("rotation_degrees", float(config.rotation_degrees)),
                ("scale_range", tuple(float(v) for v in config.scale_range)),
                ("translation_fraction", float(config.translation_fraction)),
                ("flip_probability", float(config.flip_probability)),
                ("color_jitter", float(config.color_jitter)),
                ("fill_value", float(config.get("fill_value", 0.0)))))

  def to_config(self) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(self))


@functools.partial(jax.jit, static_argnums=2)
def _augment_jit(moving: dict[str, jax.Array], rng: jax.Array,
                 params: Params) -> dict[str, jax.Array]:
  keys = jax.random.split(rng, moving["image"].shape[0])
  config = params.to_config()
  return jax.vmap(functools.partial(augment_example, config=config))(moving, keys)
