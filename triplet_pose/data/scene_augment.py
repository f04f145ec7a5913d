"""On-device augmentation of scene batches (several people per image).

Each image gets one random affine, drawn as for a single person
(`augment.sample_affine`, the same `config.augment` fields), and the very
same matrix moves the image and every person of it: joints (P, 16, 2),
contour points (P, 26, 2), boxes, head sizes (scaled), `crop_to_original`.
A flip swaps the left and right labels within each person; persons keep
their order (nearest first). A joint that leaves the frame is no longer
annotated and its `joints_occlusion` reason becomes out-of-frame; the other
reasons move with their joints (the image moves with them). Padded persons
(`persons_valid` False) stay exactly as they came.

Not moved: `crowd_index` and `num_persons`, which training does not read,
and the instance and amodal maps, which scene batches do not carry
(`scene_pipeline`); the loss (`associative_embedding.losses`) reads the
image, joints, their visibility and `persons_valid` only.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections

from triplet_pose import keypoints as kp
from triplet_pose import transforms
from triplet_pose.data import augment
from triplet_pose.data import scene_features as sf

# Keys with persons on their second axis that the augmentation changes.
PERSON_KEYS = ("joints", "joints_visible", "joints_occlusion", "contour", "contour_visible",
               "head_size", "boxes")
GEOMETRIC_KEYS = ("image", "crop_to_original", "persons_valid", *PERSON_KEYS)


def move_boxes(boxes: jax.Array, affine: jax.Array) -> jax.Array:
  """(..., 4) x0, y0, x1, y1 boxes -> the boxes around their moved corners."""
  x0, y0, x1, y1 = (boxes[..., i] for i in range(4))
  corners = jnp.stack([jnp.stack([x0, y0], -1), jnp.stack([x1, y0], -1),
                       jnp.stack([x0, y1], -1), jnp.stack([x1, y1], -1)], axis=-2)
  moved = transforms.apply_affine(affine, corners.astype(jnp.float32))
  return jnp.concatenate([moved.min(axis=-2), moved.max(axis=-2)], axis=-1)


def transform_scene(example: dict[str, jax.Array], move: augment.Move, *,
                    color_rng: jax.Array, config: ml_collections.ConfigDict
                    ) -> dict[str, jax.Array]:
  """Applies a given `move` (and colour jitter) to one scene (no batch axis).

  Args:
    example: `image` (H, W, 3), `persons_valid` (P,), and any of
      `PERSON_KEYS` with persons first, e.g. `joints` (P, 16, 2),
      `joints_occlusion` (P, 16), `boxes` (P, 4).
    move: the affine, whether it mirrors, its scale.
    color_rng: the colour jitter's randomness.
    config: `config.augment` (see `augment.transform_example`).

  Returns:
    The scene with the image float32 in [0, 1] and every real person moved.
  """
  out = augment.transform_example(example, move, color_rng=color_rng, config=config)
  if "joints_occlusion" in example:
    # A joint annotated before and not after has left the frame (the image
    # moved with it, so other reasons still hold).
    was_annotated = augment.flip_labels(example["joints_visible"], move.flip, kp.JOINTS) > 0
    occlusion = augment.flip_labels(example["joints_occlusion"], move.flip, kp.JOINTS)
    left = was_annotated & (out["joints_visible"] <= 0)
    out["joints_occlusion"] = jnp.where(left, sf.OUT_OF_FRAME, occlusion).astype(
        example["joints_occlusion"].dtype)
  if "boxes" in example:
    out["boxes"] = move_boxes(example["boxes"], move.affine).astype(example["boxes"].dtype)
  real = example["persons_valid"].astype(bool)
  for key in PERSON_KEYS:
    if key in example:
      keep = real.reshape(real.shape + (1,) * (example[key].ndim - 1))
      out[key] = jnp.where(keep, out[key].astype(example[key].dtype), example[key])
  return out


def augment_scene(example: dict[str, jax.Array], rng: jax.Array,
                  config: ml_collections.ConfigDict) -> dict[str, jax.Array]:
  """Augments one scene (no batch axis) with one random affine for all its persons."""
  height, width = example["image"].shape[:2]
  k_affine, k_color = jax.random.split(rng)
  move = augment.Move(*augment.sample_affine(k_affine, config, height=height, width=width))
  return transform_scene(example, move, color_rng=k_color, config=config)


def augment_batch(batch: dict[str, jax.Array], rng: jax.Array,
                  config: ml_collections.ConfigDict) -> dict[str, jax.Array]:
  """Augments every image of a scene batch with its own randomness (jittable).

  Args:
    batch: a scene batch (`scene_pipeline`): `image` (B, H, W, 3) uint8 or
      float in [0, 1], `persons_valid` (B, P), and any of `PERSON_KEYS`
      (B, P, ...) and `crop_to_original` (B, 2, 3). Other keys pass through.
    rng: a PRNG key (fold in the step number outside).
    config: `config.augment`, as for one person (`augment.augment_batch`).
      With `enabled` False only the image is converted to float.

  Returns:
    The batch with `image` float32 in [0, 1] and every person moved.
  """
  if not config.enabled:
    return {**batch, "image": transforms.to_float_image(batch["image"])}
  moving = {k: v for k, v in batch.items() if k in GEOMETRIC_KEYS}
  moved = _augment_jit(moving, rng, augment.Params.from_config(config))
  return {**batch, **moved}


@functools.partial(jax.jit, static_argnums=2)
def _augment_jit(moving: dict[str, jax.Array], rng: jax.Array,
                 params: augment.Params) -> dict[str, jax.Array]:
  keys = jax.random.split(rng, moving["image"].shape[0])
  config = params.to_config()
  return jax.vmap(functools.partial(augment_scene, config=config))(moving, keys)
