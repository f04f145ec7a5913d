"""Stimulus sampling: one amplitude per phosphene from an activation mask.

dynaphos samples either the pixel nearest each phosphene centre or the
maximum of the mask within the phosphene's receptive field (a disc of
`RF_size` mm of cortex, i.e. `RF_size / magnification` degrees), and builds
an N x H x W mask to do so. Here the geometry is precomputed once on the
host: the centre pixel of each phosphene, and for receptive fields a small
window around it (the same size for all phosphenes, large enough for the
largest field) with a boolean mask of the pixels inside the field. Sampling
is then a gather of N x Ky x Kx values per image, never N x H x W.
`SamplePixels` lists the distinct pixels read, for code that draws the mask
itself and need not draw the rest (`pose.pose_stimulus`).

Distances are computed in float32 with the same formulas as dynaphos, so
that ties and field borders fall on the same pixels.
"""

from __future__ import annotations

import math

from flax import struct
import jax
import jax.numpy as jnp
import numpy as np

from triplet_pose.phosphenes import rendering


def pixel_distance(dx: np.ndarray, dy: np.ndarray, theta: np.ndarray | None,
                   gamma: float) -> np.ndarray:
  """Distance of pixel offsets (dx, dy) from a phosphene centre (float32).

  Isotropic phosphenes use the Euclidean distance; Gabor-shaped ones
  (`theta` given) dynaphos' rotated, y-stretched distance
  `sqrt(x_r^2 + gamma^2 y_r^2)`.
  """
  dx = np.asarray(dx, np.float32)
  dy = np.asarray(dy, np.float32)
  if theta is None:
    return np.sqrt(dx * dx + dy * dy)
  theta = np.asarray(theta, np.float32).reshape((-1,) + (1,) * (dx.ndim - 1))
  cos, sin = np.cos(theta), np.sin(theta)
  y_rot = -dx * sin + dy * cos
  x_rot = dx * cos + dy * sin
  return np.sqrt(x_rot * x_rot + y_rot * y_rot * np.float32(gamma ** 2))


def nearest_pixels(field: rendering.Field, *, reach: int = 2
                   ) -> tuple[np.ndarray, np.ndarray]:
  """Row and column of the pixel whose centre is nearest each phosphene.

  Ties go to the lower flat (row-major) index, as torch's argmin in
  dynaphos. The search covers `reach` pixels around the per-axis nearest
  pixel, which contains the nearest pixel for any Gabor gamma in
  [1/reach, reach].

  Args:
    field: the phosphenes and the pixel grid (numpy); with `theta`, the
      distance is the Gabor-shaped one (`pixel_distance`).
    reach: pixels searched around the per-axis nearest pixel.

  Returns:
    (rows, cols), int32 arrays of shape (N,).
  """
  x, y, grid_x, grid_y, theta, gamma = field
  x = np.asarray(x, np.float32)
  y = np.asarray(y, np.float32)
  h, w = grid_y.shape[0], grid_x.shape[0]
  offsets = np.arange(-reach, reach + 1)
  c0 = np.argmin(np.abs(grid_x[None, :] - x[:, None]), axis=1)
  r0 = np.argmin(np.abs(grid_y[None, :] - y[:, None]), axis=1)
  cols = np.clip(c0[:, None] + offsets, 0, w - 1)  # (N, K)
  rows = np.clip(r0[:, None] + offsets, 0, h - 1)
  dist = pixel_distance((grid_x[cols] - x[:, None])[:, None, :],
                        (grid_y[rows] - y[:, None])[:, :, None], theta, gamma)
  flat = rows[:, :, None] * w + cols[:, None, :]
  n = x.shape[0]
  order = np.lexsort((flat.reshape(n, -1), dist.reshape(n, -1)), axis=-1)
  best = np.take_along_axis(flat.reshape(n, -1), order[:, :1], axis=1)[:, 0]
  return (best // w).astype(np.int32), (best % w).astype(np.int32)


def receptive_field_windows(field: rendering.Field, radius: np.ndarray, rows: np.ndarray,
                            cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Windows around each phosphene and the pixels inside its receptive field.

  A pixel is inside when its (float32) distance from the phosphene is
  strictly below `radius` (degrees), dynaphos' rule. Every window has
  the same size, with a margin of one pixel beyond the largest field, so
  some pixels of every window lie outside the field (dynaphos' maximum
  over `mask * image` includes those zeros).

  Args:
    field: the phosphenes and the pixel grid (numpy).
    radius: (N,) receptive-field radii, degrees.
    rows, cols: (N,) each phosphene's centre pixel (`nearest_pixels`).

  Returns:
    (window_rows (N, Ky), window_cols (N, Kx), inside (N, Ky, Kx)); the
    index arrays are clipped to the image, clipped entries are outside.
  """
  x, y, grid_x, grid_y, theta, gamma = field
  x = np.asarray(x, np.float32)
  y = np.asarray(y, np.float32)
  radius = np.asarray(radius, np.float32)
  h, w = grid_y.shape[0], grid_x.shape[0]
  stretch = 1.0 if theta is None else max(1.0, 1.0 / gamma)
  extent = float(np.max(radius, initial=0.0)) * stretch
  step_x = float(grid_x[1] - grid_x[0])
  step_y = float(grid_y[1] - grid_y[0])
  rx = min(int(math.ceil(extent / step_x)) + 1, w)
  ry = min(int(math.ceil(extent / step_y)) + 1, h)
  win_c = cols[:, None] + np.arange(-rx, rx + 1)
  win_r = rows[:, None] + np.arange(-ry, ry + 1)
  valid_c = (win_c >= 0) & (win_c < w)
  valid_r = (win_r >= 0) & (win_r < h)
  win_c = np.clip(win_c, 0, w - 1)
  win_r = np.clip(win_r, 0, h - 1)
  dist = pixel_distance((grid_x[win_c] - x[:, None])[:, None, :],
                        (grid_y[win_r] - y[:, None])[:, :, None], theta, gamma)
  inside = ((dist < radius[:, None, None]) & valid_r[:, :, None]
            & valid_c[:, None, :])
  return win_r.astype(np.int32), win_c.astype(np.int32), inside


def sample_centres(mask: jax.Array, rows: jax.Array, cols: jax.Array) -> jax.Array:
  """(*batch, H, W) -> (*batch, N): the mask at each phosphene's pixel."""
  return mask[..., rows, cols]


def sample_windows(mask: jax.Array, win_rows: jax.Array, win_cols: jax.Array,
                   inside: jax.Array) -> jax.Array:
  """(*batch, H, W) -> (*batch, N): the maximum of the mask in each field.

  Pixels outside the field count as 0, as in dynaphos (so the result is
  never below 0).
  """
  patch = mask[..., win_rows[:, :, None], win_cols[:, None, :]]
  return jnp.max(jnp.where(inside, patch, 0), axis=(-2, -1))


@struct.dataclass
class SamplePixels:
  """The only mask pixels a simulator reads, and which phosphene reads which.

  Something that draws the mask itself (`pose.pose_stimulus`) can evaluate
  it at these U pixels instead of all H * W, then take each phosphene's
  maximum over its M (pixel, phosphene) pairs: the same amplitudes.

  Attributes:
    rows, cols: (U,) the distinct pixels read.
    pixel: (M,) index into `rows`/`cols` of each pair.
    phosphene: (M,) the phosphene of each pair.
    num_phosphenes: N.
    resolution: (H, W) of the mask.
    stimulus_scale: amperes per mask unit (`sampling.stimulus_scale`).
  """
  rows: jax.Array
  cols: jax.Array
  pixel: jax.Array
  phosphene: jax.Array
  num_phosphenes: int = struct.field(pytree_node=False)
  resolution: tuple[int, int] = struct.field(pytree_node=False)
  stimulus_scale: float = struct.field(pytree_node=False)

  def gather(self, values: jax.Array) -> jax.Array:
    """(..., U) mask values at the pixels -> (..., N) per-phosphene maximum (>= 0)."""
    pairs = jnp.moveaxis(values[..., self.pixel], -1, 0)  # (M, ...)
    best = jax.ops.segment_max(pairs, self.phosphene, num_segments=self.num_phosphenes,
                               indices_are_sorted=True)
    return jnp.moveaxis(jnp.maximum(best, 0), 0, -1)


def sample_pixels(centre_rows, centre_cols, window_rows=None, window_cols=None,
                  window_inside=None, *, resolution: tuple[int, int],
                  stimulus_scale: float) -> SamplePixels:
  """The `SamplePixels` of centre sampling, or of receptive fields when windows are given.

  Host code (numpy): call it on concrete arrays, e.g. `Simulator.sample_pixels()`.
  """
  if window_rows is None:
    phosphene = np.arange(len(np.asarray(centre_rows)))
    flat = np.asarray(centre_rows) * resolution[1] + np.asarray(centre_cols)
  else:
    inside = np.asarray(window_inside)
    rows = np.broadcast_to(np.asarray(window_rows)[:, :, None], inside.shape)
    cols = np.broadcast_to(np.asarray(window_cols)[:, None, :], inside.shape)
    phosphene = np.nonzero(inside)[0]  # Sorted: row-major order of (N, Ky, Kx).
    flat = (rows * resolution[1] + cols)[inside]
  unique, pixel = np.unique(flat, return_inverse=True)
  return SamplePixels(
      rows=jnp.asarray(unique // resolution[1], jnp.int32),
      cols=jnp.asarray(unique % resolution[1], jnp.int32),
      pixel=jnp.asarray(pixel.ravel(), jnp.int32),
      phosphene=jnp.asarray(phosphene, jnp.int32),
      num_phosphenes=int(np.asarray(centre_rows).shape[0]),
      resolution=tuple(int(v) for v in resolution), stimulus_scale=float(stimulus_scale))
