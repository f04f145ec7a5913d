"""Phosphene-space loss and errors: compare what a prosthesis user would see.

The predicted pose (`heatmaps.local_mean` of the last stack, so gradients
flow into the heatmaps) and the ground-truth pose are drawn as activation masks
(`phosphenes.render_pose`), sampled by the electrodes and rendered by the
simulator; the loss is the squared difference of the two phosphene images
over the true one's energy (`normalised_mse`). Pose errors that change what the user sees cost more than those that
do not (e.g. an error along a limb's own line). `phosphene_errors` measures
the same difference (and SSIM) for evaluation.

Phosphene thresholds are zero here, so every stimulated phosphene appears and
gradients never meet the threshold's step.
"""

from __future__ import annotations

import functools
from typing import Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from triplet_pose import keypoints as kp
from triplet_pose import phosphenes


def create_simulator(config: ml_collections.ConfigDict) -> phosphenes.Simulator:
  """The (fixed, seeded) simulator of `config.phosphene` (triplet_pose/config.py)."""
  params = phosphenes.default_params()
  params["run"]["resolution"] = [int(config.resolution)] * 2
  x, y = phosphenes.phosphenes_by_magnification(
      params, int(config.num_phosphenes), key=jax.random.key(config.seed))
  n = len(np.asarray(x))
  # One frame from rest: the size must follow the amplitude (with the
  # activation it would start from zero); the gradient stays NaN-safe.
  return phosphenes.Simulator.create(params, x, y, thresholds=np.zeros(n, np.float32),
                                     key=jax.random.key(config.seed + 1),
                                     options=phosphenes.Options(size_follows="amplitude"))


def phosphene_images(sim: phosphenes.Simulator, points: Mapping[str, jax.Array],
                     visible: Mapping[str, jax.Array], *, image_size: int,
                     line_width: float) -> jax.Array:
  """(B, R, R) phosphene images of poses given in input-image pixels.

  Args:
    sim: the simulator.
    points: {keypoint set name: (B, K, 2)}: joints are drawn as points and
      skeleton, contour points as their outline.
    visible: {keypoint set name: (B, K)} which points exist.
    image_size: side of the (square) image the points are in.
    line_width: in simulator pixels.
  """
  mask = phosphenes.render_pose(
      points, image_size=(image_size, image_size), output_size=sim.resolution,
      visible=visible, style=phosphenes.DrawStyle(line_width=line_width))
  amplitude = sim.sample_stimulus(mask, rescale=True)
  _, images = sim.step(sim.init_state(batch_shape=mask.shape[:-2]), amplitude)
  return images


def normalised_mse(seen: jax.Array, wanted: jax.Array, *, axis=None) -> jax.Array:
  """Squared difference of phosphene images over the wanted image's energy.

  Scale-free: 0 when identical, about 1 or more for a pose drawn in the wrong
  place, so a loss weight reads like a heatmap-loss factor. `axis` picks what
  is averaged (None: everything, the training loss; the image axes: one value
  per person, the evaluation).
  """
  return (jnp.mean(jnp.square(seen - wanted), axis=axis)
          / (jnp.mean(jnp.square(wanted), axis=axis) + 1e-6))


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


@functools.partial(jax.jit, static_argnames=("name", "image_size", "line_width"))
def _errors_batch(sim, predicted, truth, visible, *, name, image_size, line_width):
  render = functools.partial(phosphene_images, sim, visible={name: visible},
                             image_size=image_size, line_width=line_width)
  seen, wanted = render({name: predicted}), render({name: truth})
  return (normalised_mse(seen, wanted, axis=(-2, -1)),
          ssim(seen, wanted, data_range=1.0))


def phosphene_errors(sim: phosphenes.Simulator, predicted, truth, visible, *,
                     keypoint_set: kp.KeypointSet, image_size: int,
                     line_width: float = 2.0,
                     batch_size: int = 64) -> dict[str, float]:
  """How different the predicted pose looks from the true one through the implant.

  Both poses (the visible points of the ground truth) are drawn and rendered
  as in the training loss; the joints as points and skeleton, contour points
  as their outline.

  Args:
    sim: from `create_simulator`.
    predicted, truth: (P, K, 2) points in pixels of the (square) model input.
    visible: (P, K) ground-truth visibility.
    keypoint_set: `keypoints.JOINTS` or `CONTOUR`.
    image_size: side of the model input in pixels.
    line_width: in simulator pixels.
    batch_size: persons rendered at once.

  Returns:
    {'phosphene_nmse': mean over persons of the squared difference of the two
    phosphene images over the ground truth's energy (0 = identical, about 1
    or more = nothing in common), 'phosphene_ssim': mean SSIM (1 = identical)}.

  Raises:
    ValueError: for shapes that disagree.
  """
  predicted, truth = np.asarray(predicted, np.float32), np.asarray(truth, np.float32)
  visible = np.asarray(visible, np.float32)
  if predicted.shape != truth.shape or truth.shape[:-1] != visible.shape:
    raise ValueError(f"predicted {predicted.shape}, truth {truth.shape} and visible "
                     f"{visible.shape} must be (P, K, 2), (P, K, 2), (P, K)")
  nmse, similarity = [], []
  for start in range(0, len(truth), batch_size):
    part = slice(start, start + batch_size)
    a, b = _errors_batch(sim, predicted[part], truth[part], visible[part],
                         name=keypoint_set.name, image_size=int(image_size),
                         line_width=float(line_width))
    nmse.append(np.asarray(a))
    similarity.append(np.asarray(b))
  return {"phosphene_nmse": float(np.mean(np.concatenate(nmse))),
          "phosphene_ssim": float(np.mean(np.concatenate(similarity)))}
