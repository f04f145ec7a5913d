"""Anti-aliased drawing primitives: distances of pixels from segments and polygons.

Pure, differentiable jax (except the polygons' even-odd inside test, which
carries no gradient); `pose.py` draws poses with them and `readability.py`
tests points against limb polygons.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_EPS = 1e-12  # Squared pixels; keeps sqrt differentiable on the primitive.


def segment_distance(px, py, a, b):
  """Distance of pixel centres (H, 1), (1, W) from segments a-b, (E, 2) each."""
  ax, ay = a[:, 0, None, None], a[:, 1, None, None]
  dx, dy = (b - a)[:, 0, None, None], (b - a)[:, 1, None, None]
  length2 = dx * dx + dy * dy
  t = ((px - ax) * dx + (py - ay) * dy) / jnp.maximum(length2, _EPS)
  t = jnp.clip(t, 0.0, 1.0)
  ex, ey = px - (ax + t * dx), py - (ay + t * dy)
  return jnp.sqrt(ex * ex + ey * ey + _EPS)  # (E, H, W)


def coverage(distance, half_width):
  return jnp.clip(half_width + 0.5 - distance, 0.0, 1.0)


def inside_polygons(px, py, vertices):
  """Even-odd inside test of pixel centres for polygons (P, V, 2): (P, H, W)."""
  nxt = jnp.roll(vertices, -1, axis=1)
  vx, vy = vertices[..., 0, None, None], vertices[..., 1, None, None]
  nx, ny = nxt[..., 0, None, None], nxt[..., 1, None, None]
  straddles = (vy > py[None]) != (ny > py[None])
  denom = jnp.where(ny == vy, 1.0, ny - vy)
  x_cross = vx + (nx - vx) * (py[None] - vy) / denom
  crossings = jnp.sum(straddles & (px[None] < x_cross), axis=1)
  return crossings % 2 == 1


def polygon_signed_distance(px, py, vertices, edge_distance=None):
  """Signed distance (negative inside) of points from polygons (P, V, 2).

  Args:
    px, py: broadcastable point coordinates, e.g. pixel centres (H, 1) and
      (1, W), or (1, N) and (1, N) for N points.
    vertices: (P, V, 2) polygons, vertices in order around each.
    edge_distance: optional precomputed `segment_distance` of the P * V
      edges (vertex i to i + 1), (P * V, ...).

  Returns:
    (P, ...) signed distances; the inside test (even-odd) carries no
    gradient, the distance does.
  """
  p, v = vertices.shape[:2]
  if edge_distance is None:
    edge_distance = segment_distance(px, py, vertices.reshape(-1, 2),
                                      jnp.roll(vertices, -1, axis=1).reshape(-1, 2))
  dist = jnp.min(edge_distance.reshape((p, v) + edge_distance.shape[1:]), axis=1)
  inside = jax.lax.stop_gradient(inside_polygons(px, py, vertices))
  return jnp.where(inside, -dist, dist)
