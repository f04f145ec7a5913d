"""Pictoriality: does a representation's phosphene image look like the figure?

Beside PCKh (what a reader decodes), the overlap of each phosphene image
with the figure's silhouette image (filled limbs and torso, from the true
pose) as the same implant shows it: the silhouette's phosphene image at the
same phosphene count and layout, the best picture of the body this implant
can give (the silhouette itself scores 1). Compared with the raw silhouette
instead, every phosphene image scores alike (a few dots against a filled
body); through the implant, a line drawing overlaps part of the body, and a
private code that a trained reader decodes overlaps little.

* `IOU_THRESHOLD`: a pixel counts as lit at this fraction of its image's
  own maximum (images with few phosphenes are dim: each is stretched
  first, as the example figure shows them).
* `pictoriality(images, references)`: mean IoU and SSIM over the figures.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from triplet_pose import phosphene_loss

IOU_THRESHOLD = 0.25


def _unit(images) -> np.ndarray:
  """Images (uint8 or float) -> float32 in [0, 1], each stretched to its maximum."""
  x = np.asarray(images, np.float32)
  peak = x.reshape(len(x), -1).max(axis=1)[:, None, None]
  return x / np.maximum(peak, 1e-12)


def pictoriality(images, silhouettes, *, batch_size: int = 100) -> dict[str, float]:
  """IoU and SSIM of phosphene images against reference images.

  Args:
    images: (B, S, S) phosphene images (uint8 or [0, 1]).
    silhouettes: (B, S, S) the silhouette images of the same figures (the
      benchmark passes their phosphene images at the same N and layout).
    batch_size: images compared at once (SSIM's memory).

  Returns:
    {'iou', 'ssim'}: means over the figures.
  """
  images, silhouettes = _unit(images), _unit(silhouettes)
  if images.shape != silhouettes.shape:
    raise ValueError(f"images {images.shape} and silhouettes {silhouettes.shape} differ")
  lit = images >= IOU_THRESHOLD
  body = silhouettes >= IOU_THRESHOLD
  union = np.sum(lit | body, axis=(1, 2))
  iou = np.where(union > 0, np.sum(lit & body, axis=(1, 2)) / np.maximum(union, 1), 1.0)
  ssim = np.concatenate([
      np.asarray(phosphene_loss.ssim(jnp.asarray(images[i:i + batch_size]),
                                     jnp.asarray(silhouettes[i:i + batch_size])))
      for i in range(0, len(images), batch_size)])
  return {"iou": float(iou.mean()), "ssim": float(ssim.mean())}
