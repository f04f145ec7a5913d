"""Rendering Gaussian phosphenes into an image without an N x H x W tensor.

An isotropic Gaussian factors into a row and a column profile:
`exp(-((u - x)^2 + (v - y)^2) / (2 s^2)) = g_x(u) g_y(v)`, so the image
`sum_n b_n g_xn(u) g_yn(v)` is the matrix product `G_y^T diag(b) G_x`
with G_x of shape (N, W) and G_y of shape (N, H): O(N (H + W)) memory and
one (H x N) by (N x W) product per frame. Anisotropic (Gabor) phosphenes
do not factor; they are summed densely in chunks of phosphenes so memory
stays bounded.

Pixel grid (as dynaphos): column j sits at x = linspace(x_min, x_max, W)[j]
and row i at y = linspace(y_min, y_max, H)[i], so row 0 is the smallest y.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from triplet_pose.phosphenes import layout

# dynaphos clamps sigma here before dividing by it.
DYNAPHOS_MIN_SIGMA = 1e-22
# Below this sigma (degrees) a phosphene is treated as absent (corrected mode).
MIN_SIGMA = 1e-12


class Field(NamedTuple):
  """The phosphenes' centres and shapes, and the pixel grid they are drawn on.

  Numpy arrays on the host (sampling geometry) or jax arrays (rendering).

  Attributes:
    x, y: phosphene centres (N,), degrees.
    grid_x, grid_y: pixel-centre coordinates (W,), (H,), degrees (`pixel_grid`).
    theta: Gabor orientations (N,), radians; None for isotropic phosphenes.
    gamma: the Gabor envelope's aspect ratio (y is stretched by it).
  """
  x: Any
  y: Any
  grid_x: Any
  grid_y: Any
  theta: Any = None
  gamma: float = 1.0


def pixel_grid(run_params: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
  """Pixel-centre coordinates (degrees) of the columns and rows, float32.

  Returns:
    (grid_x of shape (W,), grid_y of shape (H,)) for resolution [W, H].
  """
  x_min, x_max, y_min, y_max = layout.view_bounds(run_params)
  width, height = (int(v) for v in run_params["resolution"])
  return (np.linspace(x_min, x_max, width).astype(np.float32),
          np.linspace(y_min, y_max, height).astype(np.float32))


def gaussian_profiles(centres: jax.Array, sigma: jax.Array, grid: jax.Array, *,
                      dynaphos_compatible: bool) -> jax.Array:
  """exp(-((grid - centre) / sigma)^2 / 2): (*batch, N) -> (*batch, N, G).

  In dynaphos-compatible mode sigma is clamped at 1e-22 as dynaphos does,
  which leaves a one-pixel spike where a zero-size phosphene sits exactly
  on a pixel and gives NaN gradients at sigma = 0. Otherwise a phosphene
  with sigma below `MIN_SIGMA` renders nothing and has zero gradient.
  """
  offsets = grid - centres[..., None]
  if dynaphos_compatible:
    s = jnp.maximum(sigma, DYNAPHOS_MIN_SIGMA)[..., None]
    return jnp.exp(-0.5 * (offsets / s) ** 2)
  ok = sigma > MIN_SIGMA
  s = jnp.where(ok, sigma, 1.0)[..., None]
  return jnp.where(ok[..., None], jnp.exp(-0.5 * (offsets / s) ** 2), 0.0)


def render_separable(field: Field, sigma: jax.Array, intensity: jax.Array, *,
                     dynaphos_compatible: bool,
                     precision: jax.lax.Precision = jax.lax.Precision.HIGHEST,
                     ) -> jax.Array:
  """Sums isotropic Gaussian phosphenes and clips to [0, 1].

  Args:
    field: the phosphenes' centres and the pixel grid (theta is ignored).
    sigma: (*batch, N) standard deviations, degrees.
    intensity: (*batch, N) peak values.
    dynaphos_compatible: see `gaussian_profiles`.
    precision: matmul precision (HIGHEST keeps float32 accuracy on GPUs).

  Returns:
    (*batch, H, W) image.
  """
  gx = gaussian_profiles(field.x, sigma, field.grid_x,
                         dynaphos_compatible=dynaphos_compatible)
  gy = gaussian_profiles(field.y, sigma, field.grid_y,
                         dynaphos_compatible=dynaphos_compatible)
  image = jnp.einsum("...nh,...nw->...hw", intensity[..., None] * gy, gx,
                     precision=precision)
  return jnp.clip(image, 0.0, 1.0)


def render_dense(field: Field, sigma: jax.Array, intensity: jax.Array, *,
                 dynaphos_compatible: bool, chunk_elements: int = 1 << 22) -> jax.Array:
  """Sums anisotropic (Gabor-envelope) phosphenes, chunked over phosphenes.

  Phosphene n has distance `sqrt(x_r^2 + gamma^2 y_r^2)` from pixel
  offsets rotated by theta_n, as dynaphos' `gabor_rotation`. Memory is
  about `chunk_elements` floats whatever N is.

  Args:
    field: the phosphenes (with their orientations `theta`) and the grid.
    sigma: (*batch, N) standard deviations, degrees.
    intensity: (*batch, N) peak values.
    dynaphos_compatible: see `gaussian_profiles`.
    chunk_elements: floats of one chunk's (phosphenes x H x W) tensor.

  Returns:
    (*batch, H, W) image clipped to [0, 1].
  """
  x, y, grid_x, grid_y, theta, gamma = field
  batch = sigma.shape[:-1]
  n = x.shape[0]
  h, w = grid_y.shape[0], grid_x.shape[0]
  sigma2 = sigma.reshape((-1, n))
  inten2 = intensity.reshape((-1, n))
  b = sigma2.shape[0]
  chunk = int(max(1, min(n, chunk_elements // max(1, b * h * w))))
  pad = (-n) % chunk

  def padded(a, value):
    return jnp.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, pad)], constant_values=value)

  xs = padded(x, 0.0).reshape((-1, chunk))
  ys = padded(y, 0.0).reshape((-1, chunk))
  ths = padded(theta, 0.0).reshape((-1, chunk))
  sig = jnp.moveaxis(padded(sigma2, 1.0).reshape((b, -1, chunk)), 1, 0)
  inten = jnp.moveaxis(padded(inten2, 0.0).reshape((b, -1, chunk)), 1, 0)

  def body(acc, args):
    cx, cy, th, s, a = args  # (c,), (c,), (c,), (b, c), (b, c)
    dx = grid_x[None, None, :] - cx[:, None, None]
    dy = grid_y[None, :, None] - cy[:, None, None]
    cos, sin = jnp.cos(th)[:, None, None], jnp.sin(th)[:, None, None]
    y_rot = -dx * sin + dy * cos
    x_rot = dx * cos + dy * sin
    d2 = x_rot ** 2 + y_rot ** 2 * gamma ** 2  # (c, H, W)
    if dynaphos_compatible:
      s_c = jnp.maximum(s, DYNAPHOS_MIN_SIGMA)[..., None, None]
      g = jnp.exp(-0.5 * (jnp.sqrt(d2)[None] / s_c) ** 2)
    else:
      ok = (s > MIN_SIGMA)[..., None, None]
      s_c = jnp.where(ok, s[..., None, None], 1.0)
      g = jnp.where(ok, jnp.exp(-0.5 * d2[None] / s_c ** 2), 0.0)
    return acc + jnp.einsum("bc,bchw->bhw", a, g), None

  init = jnp.zeros((b, h, w), sigma.dtype)
  image, _ = jax.lax.scan(body, init, (xs, ys, ths, sig, inten))
  return jnp.clip(image, 0.0, 1.0).reshape(batch + (h, w))
