"""Phosphene-space loss and errors: compare what a prosthesis user would see.

The predicted pose (`heatmaps.local_mean` of the last stack, so gradients
flow into the heatmaps) and the ground-truth pose are drawn as activation masks
(`phosphenes.render_pose`), sampled by the electrodes and rendered by the
simulator; the loss is the mean squared difference of the two phosphene
images. Pose errors that change what the user sees cost more than those that
do not (e.g. an error along a limb's own line).

Phosphene thresholds are zero here, so every stimulated phosphene appears and
gradients never meet the threshold's step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from triplet_pose import phosphenes


def create_simulator(config: ml_collections.ConfigDict) -> phosphenes.Simulator:
  """The (fixed, seeded) simulator of `config.phosphene` (configs/common.py)."""
  params = phosphenes.default_params()
  params["run"]["resolution"] = [int(config.resolution)] * 2
  x, y = phosphenes.phosphenes_by_magnification(
      params, int(config.num_phosphenes), key=jax.random.key(config.seed))
  n = len(np.asarray(x))
  # One frame from rest: the size must follow the amplitude (with the
  # activation it would start from zero); the gradient stays NaN-safe.
  return phosphenes.Simulator.create(params, x, y, thresholds=np.zeros(n, np.float32),
                                     key=jax.random.key(config.seed + 1),
                                     size_follows="amplitude")


def phosphene_images(sim: phosphenes.Simulator, *, image_size: int,
                     line_width: float, joints=None, joints_visible=None,
                     contour=None, contour_visible=None) -> jax.Array:
  """(B, R, R) phosphene images of poses given in input-image pixels."""
  mask = phosphenes.render_pose(
      joints, contour, image_size=(image_size, image_size),
      output_size=sim.resolution, joints_visible=joints_visible,
      contour_visible=contour_visible, line_width=line_width,
      draw_joints=joints is not None, draw_skeleton=joints is not None,
      draw_contour=contour is not None)
  amplitude = sim.sample_stimulus(mask, rescale=True)
  _, images = sim.step(sim.init_state(batch_shape=mask.shape[:-2]), amplitude)
  return images


def ssim(a: jax.Array, b: jax.Array, *, data_range: float = 1.0) -> jax.Array:
  """Mean structural similarity of (..., H, W) images (7x7 uniform windows)."""
  def blur(x):
    k = jnp.ones((7,), x.dtype) / 7.0
    x = jnp.apply_along_axis(lambda r: jnp.convolve(r, k, mode="valid"), -1, x)
    return jnp.apply_along_axis(lambda c: jnp.convolve(c, k, mode="valid"), -2, x)
  c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
  mu_a, mu_b = blur(a), blur(b)
  var_a = blur(a * a) - mu_a ** 2
  var_b = blur(b * b) - mu_b ** 2
  cov = blur(a * b) - mu_a * mu_b
  s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
      (mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
  return jnp.mean(s, axis=(-2, -1))
