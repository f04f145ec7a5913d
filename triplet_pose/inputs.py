"""What the models see and what they must predict, built from a batch on device.

* `model_inputs`: the image in [0, 1] for the joint model; for the triplet model
  the image concatenated with 16 joint heatmaps rendered at input resolution
  (19 channels), from ground truth, jittered ground truth, or the joint model's
  own predictions (`config.triplet_input`).
* `targets`: the heatmaps to regress and the per-keypoint loss weights
  (keypoint visibility).

All functions are pure and run inside the jitted train and eval steps.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections

from triplet_pose import heatmaps
from triplet_pose import keypoints as kp
from triplet_pose import transforms

TRIPLET_INPUTS = ("ground_truth", "noisy_ground_truth", "predicted")

# (variables, images) -> {'joints': per-stack heatmaps (B, S, h, w, 16)}.
JointPredictor = Callable[[Any, jax.Array], dict[str, jax.Array]]


def num_input_channels(config: ml_collections.ConfigDict) -> int:
  """3 + 16 = 19 for the triplet model (image + joint heatmaps); 3 otherwise."""
  return 3 + kp.JOINTS.size if config.model.target == kp.CONTOUR.name else 3


def joint_input_heatmaps(config: ml_collections.ConfigDict, joints: jax.Array,
                         visible: jax.Array, *, image_size: int) -> jax.Array:
  """Renders joints (B, 16, 2), in input pixels, as (B, S, S, 16) input heatmaps.

  The kernel covers the same image area as the target heatmaps: sigma and
  radius are scaled by image_size / heatmap_size.
  """
  factor = image_size / config.input.heatmap_size
  return heatmaps.render(joints, visible, height=image_size,
                         kernel=config.heatmap.input_kernel,
                         sigma=config.heatmap.sigma * factor,
                         radius=config.heatmap.radius * factor,
                         peak=config.heatmap.input_peak)


def model_inputs(config: ml_collections.ConfigDict, batch: dict[str, jax.Array],
                 rng: jax.Array, *, joint_predictor: JointPredictor | None = None,
                 joint_variables: Any = None) -> jax.Array:
  """The model's input images (B, H, W, C), float32.

  Args:
    config: the experiment config.
    batch: a batch whose `image` is uint8 or float in [0, 1].
    rng: randomness for `noisy_ground_truth`.
    joint_predictor: for `triplet_input == 'predicted'`: the joint model.
    joint_variables: the joint model's variables.

  Raises:
    ValueError: for an unknown `triplet_input`, or 'predicted' without a joint
      model.
  """
  images = transforms.to_float_image(batch["image"])
  if config.model.target != kp.CONTOUR.name:
    return images
  size = images.shape[1]
  joints, visible = batch["joints"], batch["joints_visible"]
  mode = config.triplet_input
  if mode == "noisy_ground_truth":
    joints = joints + config.triplet_noise_std * jax.random.normal(rng, joints.shape)
  elif mode == "predicted":
    if joint_predictor is None or joint_variables is None:
      raise ValueError("triplet_input='predicted' needs the joint model: set "
                       "config.joint_workdir to a trained joint model's workdir")
    joints, visible = predict_joints(joint_predictor, joint_variables, images,
                                     image_size=size)
  elif mode != "ground_truth":
    raise ValueError(f"config.triplet_input must be one of {TRIPLET_INPUTS}, "
                     f"got {mode!r}")
  joint_maps = joint_input_heatmaps(config, joints, visible, image_size=size)
  return jnp.concatenate([images, joint_maps], axis=-1)


def predict_joints(joint_predictor: JointPredictor, joint_variables: Any,
                   images: jax.Array, *, image_size: int
                   ) -> tuple[jax.Array, jax.Array]:
  """Joints (B, 16, 2) in input pixels and their weights from the joint model.

  The last stack's heatmaps are decoded and re-rendered at input resolution,
  so predicted and ground-truth inputs share one appearance. No gradient flows
  into the joint model.
  """
  stacks = jax.lax.stop_gradient(joint_predictor(joint_variables, images)[kp.JOINTS.name])
  joints, _ = heatmaps.decode_to_pixels(stacks[:, -1], image_size)
  return joints, jnp.ones(joints.shape[:-1], jnp.float32)


def targets(config: ml_collections.ConfigDict, batch: dict[str, jax.Array],
            keypoint_set: kp.KeypointSet) -> tuple[jax.Array, jax.Array]:
  """Target heatmaps (B, h, w, K) and loss weights (B, K) of one keypoint set.

  Args:
    config: the experiment config (`heatmap` and `input.heatmap_size`).
    batch: the batch, holding the set's points and visibility.
    keypoint_set: which keypoints (`keypoints.JOINTS` or `CONTOUR`).
  """
  points = batch[keypoint_set.name]
  visible = batch[keypoint_set.visible_key].astype(jnp.float32)
  image_size = batch["image"].shape[1]
  size = config.input.heatmap_size
  coords = heatmaps.rescale_coordinates(points, image_size, size)
  maps = heatmaps.render(coords, visible, height=size,
                         kernel=config.heatmap.target_kernel,
                         sigma=config.heatmap.sigma, radius=config.heatmap.radius,
                         peak=config.heatmap.target_peak)
  return maps, visible
