"""Keypoint heatmaps: rendering training targets and decoding predictions.

Heatmaps are channel-last, (..., H, W, K), like the model's output. Keypoint
coordinates are (x, y) in the pixels of the grid they refer to, with integer
coordinates at pixel centres; `rescale_coordinates` moves them between grids
(e.g. the 256x256 crop and the 64x64 heatmap).

Two target kernels:

* ``gaussian``: exp(-d^2 / 2 sigma^2), peak 1, sigma 1 cell (the standard of
  Newell et al. and most pose toolboxes).
* ``pyramid``: the thesis kernel, (r - |dy|)(r - |dx|) / r^2 inside r = 5
  cells, scaled by 1000 to keep the L2 loss away from vanishing gradients.

`sigma` and `radius` are in cells of the grid being rendered; to cover the
same image area on a finer grid (the triplet model's joint-heatmap input at
input resolution), multiply them by the ratio of the grid sizes.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

KERNELS = ("gaussian", "pyramid")
_DEFAULT_PEAK = {"gaussian": 1.0, "pyramid": 1000.0}


def rescale_coordinates(xy: jax.Array, from_size: int | Sequence[int],
                        to_size: int | Sequence[int]) -> jax.Array:
  """Maps (x, y) pixel coordinates from one grid to another of the same area.

  Args:
    xy: (..., 2) coordinates in the pixels of `from_size`.
    from_size: (height, width) of the source grid, or one int for a square.
    to_size: (height, width) of the target grid, or one int for a square.

  Returns:
    (..., 2) coordinates in the pixels of `to_size`.
  """
  fh, fw = _pair(from_size)
  th, tw = _pair(to_size)
  scale = jnp.asarray([tw / fw, th / fh], dtype=jnp.float32)
  return (xy + 0.5) * scale - 0.5


def render(keypoints: jax.Array, visible: jax.Array | None = None, *,
           height: int, width: int | None = None, kernel: str = "gaussian",
           sigma: float = 1.0, radius: float = 5.0,
           peak: float | None = None) -> jax.Array:
  """Renders one heatmap per keypoint.

  Args:
    keypoints: (..., K, 2) float (x, y) in the pixels of the HxW grid.
    visible: (..., K) weights (0 = not annotated: an all-zero heatmap).
      None means all visible.
    height: grid height H.
    width: grid width W (defaults to H).
    kernel: 'gaussian' or 'pyramid'.
    sigma: Gaussian standard deviation, in cells of this grid.
    radius: pyramid half-width r, in cells of this grid.
    peak: value at the keypoint; default 1 (gaussian) or 1000 (pyramid).

  Returns:
    (..., H, W, K) float32 heatmaps.

  Raises:
    ValueError: for an unknown kernel or keypoints not shaped (..., K, 2).
  """
  if kernel not in KERNELS:
    raise ValueError(f"heatmap kernel must be one of {KERNELS}, got {kernel!r}")
  if keypoints.ndim < 2 or keypoints.shape[-1] != 2:
    raise ValueError(
        f"keypoints must have shape (..., K, 2), got {tuple(keypoints.shape)}")
  width = height if width is None else width
  peak = _DEFAULT_PEAK[kernel] if peak is None else peak
  keypoints = jnp.asarray(keypoints, jnp.float32)
  x = keypoints[..., 0][..., None, :]  # (..., 1, K)
  y = keypoints[..., 1][..., None, :]
  dx = jnp.arange(width, dtype=jnp.float32)[:, None] - x  # (..., W, K)
  dy = jnp.arange(height, dtype=jnp.float32)[:, None] - y  # (..., H, K)
  # Both kernels factor into a y profile times an x profile: O(K(H+W)) work
  # before the final outer product.
  if kernel == "gaussian":
    fx = jnp.exp(-0.5 * (dx / sigma) ** 2)
    fy = jnp.exp(-0.5 * (dy / sigma) ** 2)
  else:
    r = radius
    fx = jnp.maximum(r - jnp.abs(dx), 0.0) / r
    fy = jnp.maximum(r - jnp.abs(dy), 0.0) / r
  if visible is not None:
    fy = fy * jnp.asarray(visible, jnp.float32)[..., None, :]
  return peak * fy[..., :, None, :] * fx[..., None, :, :]


def decode(heatmaps: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Decodes heatmaps to sub-pixel keypoints.

  The location is the argmax, shifted by a quarter cell toward the larger
  neighbour in x and in y (Newell et al.; no shift on the border); the
  confidence is the heatmap value at the argmax.

  Args:
    heatmaps: (..., H, W, K).

  Returns:
    coords: (..., K, 2) float32 (x, y) in heatmap pixels.
    confidence: (..., K) float32.
  """
  *batch, h, w, k = heatmaps.shape
  flat = jnp.moveaxis(heatmaps.reshape(*batch, h * w, k), -1, -2)  # (..., K, HW)
  index = jnp.argmax(flat, axis=-1)
  confidence = jnp.take_along_axis(flat, index[..., None], axis=-1)[..., 0]
  coords = cell_coordinates(flat, index[..., None], width=w)[..., 0, :]
  return coords.astype(jnp.float32), confidence.astype(jnp.float32)


def cell_coordinates(flat, index, *, width: int):
  """(..., M, 2) x, y of cells of flattened maps, each shifted by a quarter
  cell toward its larger neighbour in x and in y (Newell et al.'s sub-pixel
  step; no shift along an axis where a neighbour is missing).

  Args:
    flat: (..., H * W) maps, rows of `width` cells: jax or numpy arrays
      (host code such as `grouping.refine` stays in numpy).
    index: (..., M) cells, flat indices into the last axis.
    width: W.
  """
  xp = np if isinstance(flat, np.ndarray) and isinstance(index, np.ndarray) else jnp
  h = flat.shape[-1] // width
  iy, ix = index // width, index % width

  def value(yy, xx):
    cell = xp.clip(yy, 0, h - 1) * width + xp.clip(xx, 0, width - 1)
    return xp.take_along_axis(flat, cell, axis=-1)

  shift_x = xp.where((ix > 0) & (ix < width - 1),
                     0.25 * xp.sign(value(iy, ix + 1) - value(iy, ix - 1)), 0.0)
  shift_y = xp.where((iy > 0) & (iy < h - 1),
                     0.25 * xp.sign(value(iy + 1, ix) - value(iy - 1, ix)), 0.0)
  return xp.stack([ix + shift_x, iy + shift_y], axis=-1)


def decode_to_pixels(maps: jax.Array, image_size: int | Sequence[int]
                     ) -> tuple[jax.Array, jax.Array]:
  """Heatmaps (B, h, w, K) -> keypoints (B, K, 2) in the pixels of an
  `image_size` image covering the same area, and confidence (B, K)."""
  coords, confidence = decode(maps)
  return rescale_coordinates(coords, maps.shape[1:3], image_size), confidence


def local_mean(heatmaps: jax.Array, *, radius: int = 2) -> jax.Array:
  """Differentiable sub-pixel keypoints: the centre of mass near the argmax.

  The window of (2 radius + 1)^2 cells around the argmax is weighted by the
  (non-negative part of the) heatmap. For a symmetric peak this recovers the
  centre to a small fraction of a cell, and, unlike `decode`, its gradient
  reaches the heatmap values, so losses defined on keypoints (the
  phosphene-space loss) can train the model.

  Args:
    heatmaps: (..., H, W, K).
    radius: window half-size in cells.

  Returns:
    (..., K, 2) float32 (x, y) in heatmap pixels.
  """
  *batch, h, w, k = heatmaps.shape
  flat = jnp.moveaxis(heatmaps.reshape(*batch, h * w, k), -1, -2).astype(jnp.float32)
  index = jax.lax.stop_gradient(jnp.argmax(flat, axis=-1))
  iy, ix = index // w, index % w
  offsets = jnp.arange(-radius, radius + 1)
  yy = iy[..., None, None] + offsets[:, None]  # (..., K, 2r+1, 1)
  xx = ix[..., None, None] + offsets[None, :]  # (..., K, 1, 2r+1)
  yy, xx = jnp.broadcast_arrays(yy, xx)
  inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
  cells = (jnp.clip(yy, 0, h - 1) * w + jnp.clip(xx, 0, w - 1)).reshape(*batch, k, -1)
  weights = jnp.take_along_axis(flat, cells, axis=-1).reshape(yy.shape)
  weights = jnp.where(inside, jnp.maximum(weights, 0.0), 0.0)
  total = jnp.maximum(weights.sum(axis=(-2, -1)), 1e-12)
  x = jnp.sum(weights * xx, axis=(-2, -1)) / total
  y = jnp.sum(weights * yy, axis=(-2, -1)) / total
  return jnp.stack([x, y], axis=-1).astype(jnp.float32)


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
  if isinstance(size, int):
    return size, size
  h, w = size
  return int(h), int(w)
