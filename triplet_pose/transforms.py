"""Affine transforms of images and keypoints: the one place that owns them.

Crops (MPII centre/scale boxes, the thesis keypoint box), on-device
augmentation and mapping predictions back to the original image all use the
same representation, so that a keypoint and the pixels under it always move
together:

* An affine is a (..., 2, 3) array `A` mapping source points to destination
  points: `dst = A[:, :2] @ src + A[:, 2]`.
* Points are (x, y) pixels where integer coordinates are pixel centres (the
  project convention): the first pixel spans [-0.5, 0.5]. A crop of side
  `side` source pixels around `centre` resized to `out` pixels maps `centre`
  to `(out - 1) / 2`.

Functions accept numpy or jax arrays and return the same kind, except the
image warps: `warp_image_np` (host, PIL, anti-aliased, used to build
datasets) and `warp_image` (jax, bilinear, jittable, used on device).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image


def _xp(*arrays):
  """numpy unless any argument is a jax array (or tracer)."""
  return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def to_float_image(image: jax.Array) -> jax.Array:
  """uint8 [0, 255] or float [0, 1] images -> float32 in [0, 1] (jax)."""
  if image.dtype == jnp.uint8:
    return image.astype(jnp.float32) / 255.0
  return jnp.asarray(image, jnp.float32)


def scale_translate_affine(scale, translation):
  """`dst = scale * src + translation` (scale a scalar or (..., 2))."""
  xp = _xp(scale, translation)
  translation = xp.asarray(translation)
  scale = xp.broadcast_to(xp.asarray(scale, dtype=translation.dtype), translation.shape)
  zero = xp.zeros_like(scale[..., 0])
  row_x = xp.stack([scale[..., 0], zero, translation[..., 0]], axis=-1)
  row_y = xp.stack([zero, scale[..., 1], translation[..., 1]], axis=-1)
  return xp.stack([row_x, row_y], axis=-2)


def center_scale_affine(center, side, out_size: int):
  """Source -> crop affine of a square box of `side` pixels around `center`.

  This is the MPII crop: the box `side = 200 * scale` around the person
  centre, resized to `out_size` x `out_size`.

  Args:
    center: (..., 2) box centre in source pixels.
    side: (...,) box side in source pixels.
    out_size: side of the crop in pixels.

  Returns:
    (..., 2, 3) affine from source to crop pixels.
  """
  xp = _xp(center, side)
  center = xp.asarray(center, dtype=float)
  k = out_size / xp.asarray(side, dtype=float)
  k2 = xp.stack([k, k], axis=-1)
  return scale_translate_affine(k2, (out_size - 1) / 2 - k2 * center)


def box_affine(box, out_size: int):
  """Source -> crop affine fitting a box's longer side to `out_size`, centred.

  Args:
    box: (..., 4) inclusive pixel box (x0, y0, x1, y1); it spans
      x1 - x0 + 1 pixels in x.
    out_size: side of the square crop.

  Returns:
    (..., 2, 3) affine; the box's shorter side is centred in the crop.
  """
  xp = _xp(box)
  box = xp.asarray(box, dtype=float)
  size = xp.maximum(box[..., 2] - box[..., 0], box[..., 3] - box[..., 1]) + 1
  center = xp.stack([(box[..., 0] + box[..., 2]) / 2, (box[..., 1] + box[..., 3]) / 2], -1)
  return center_scale_affine(center, size, out_size)


def rotation_affine(*, angle, scale, center, translation=(0.0, 0.0)):
  """Rotation by `angle` radians and scaling about `center`, then a shift.

  With y pointing down, a positive angle turns the image clockwise on screen.
  Works under jit and vmap (all arguments may be traced scalars).
  """
  xp = _xp(angle, scale, center, translation)
  center = xp.asarray(center, dtype=xp.float32 if xp is jnp else float)
  translation = xp.asarray(translation, dtype=center.dtype)
  c, s = scale * xp.cos(angle), scale * xp.sin(angle)
  linear = xp.stack([xp.stack([c, -s]), xp.stack([s, c])])
  offset = center + translation - linear @ center
  return xp.concatenate([linear, offset[:, None]], axis=1)


def flip_affine(width):
  """Horizontal mirror of an image `width` pixels wide: x -> width - 1 - x."""
  xp = _xp(width)
  w = xp.asarray(width, dtype=xp.float32 if xp is jnp else float)
  one, zero = xp.ones_like(w), xp.zeros_like(w)
  return xp.stack([xp.stack([-one, zero, w - 1]), xp.stack([zero, one, zero])])


def compose_affines(outer, inner):
  """The affine applying `inner` first, then `outer` (both (..., 2, 3))."""
  xp = _xp(outer, inner)
  linear = outer[..., :, :2] @ inner[..., :, :2]
  offset = (outer[..., :, :2] @ inner[..., :, 2:])[..., 0] + outer[..., :, 2]
  return xp.concatenate([linear, offset[..., None]], axis=-1)


def invert_affine(affine):
  """Inverse of a (..., 2, 3) affine (closed form, jittable)."""
  xp = _xp(affine)
  a, b, t0 = affine[..., 0, 0], affine[..., 0, 1], affine[..., 0, 2]
  c, d, t1 = affine[..., 1, 0], affine[..., 1, 1], affine[..., 1, 2]
  det = a * d - b * c
  ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
  row0 = xp.stack([ia, ib, -(ia * t0 + ib * t1)], axis=-1)
  row1 = xp.stack([ic, id_, -(ic * t0 + id_ * t1)], axis=-1)
  return xp.stack([row0, row1], axis=-2)


def apply_affine(affine, points):
  """Maps (..., K, 2) points through a (..., 2, 3) affine."""
  return (points @ affine[..., :, :2].swapaxes(-1, -2)) + affine[..., None, :, 2]


def in_frame(points, *, height: int, width: int):
  """True where a (..., 2) point lies on the pixel centres' grid of the frame."""
  xp = _xp(points)
  x, y = points[..., 0], points[..., 1]
  inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
  return inside & xp.isfinite(x) & xp.isfinite(y)


def _pil_coefficients(inverse: np.ndarray) -> tuple[float, ...]:
  """PIL's AFFINE data (edge coordinates) from a centre-convention dst->src affine."""
  linear, offset = inverse[:, :2], inverse[:, 2]
  edge_offset = offset + 0.5 - linear @ np.array([0.5, 0.5])
  return (linear[0, 0], linear[0, 1], edge_offset[0], linear[1, 0], linear[1, 1], edge_offset[1])


def warp_image_np(image, affine, *, out_size: int | Sequence[int],
                  fill: Sequence[int] = (0, 0, 0),
                  source_box: Sequence[int] | None = None) -> np.ndarray:
  """Warps a host image through a source -> destination affine (PIL).

  Strong downscaling is first done by an integer box reduction, so large MPII
  crops do not alias; the remaining resampling is bilinear.

  Args:
    image: (H, W, 3) uint8 array or a PIL RGB image.
    affine: (2, 3) source -> destination affine.
    out_size: destination side, or (height, width).
    fill: RGB value of destination pixels whose source is outside the image
      (or outside `source_box`).
    source_box: optional inclusive (x0, y0, x1, y1): only these source pixels
      are used; the rest count as outside (the thesis white padding).

  Returns:
    (height, width, 3) uint8 array.
  """
  out_h, out_w = (out_size, out_size) if np.isscalar(out_size) else tuple(out_size)
  pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
  pil = pil.convert("RGB")
  affine = np.asarray(affine, dtype=np.float64)
  if source_box is not None:
    x0, y0, x1, y1 = (int(v) for v in source_box)
    pil = pil.crop((x0, y0, x1 + 1, y1 + 1))  # PIL pads beyond the image with black...
    affine = compose_affines(affine, scale_translate_affine(np.ones(2), np.array([x0, y0], float)))
    w, h = x1 - x0 + 1, y1 - y0 + 1
    # ...so blank the part of the crop that lies outside the image with `fill`.
    valid = Image.new("L", pil.size, 0)
    valid.paste(255, (max(0, -x0), max(0, -y0), min(w, image_width(image) - x0),
                      min(h, image_height(image) - y0)))
    pil = Image.composite(pil, Image.new("RGB", pil.size, tuple(fill)), valid)
  # Scale of the destination per source pixel; reduce by an integer factor
  # first when it is well below 1.
  zoom = np.sqrt(abs(np.linalg.det(affine[:, :2])))
  factor = int(np.floor(1.0 / zoom)) if zoom < 0.5 else 1
  if factor > 1 and min(pil.size) >= 2 * factor:
    pil = pil.reduce(factor)
    # Pixel-centre x in the original maps to (x + 0.5) / factor - 0.5.
    reduce = scale_translate_affine(np.full(2, 1.0 / factor), np.full(2, 0.5 / factor - 0.5))
    affine = compose_affines(affine, invert_affine(reduce))
  if source_box is not None:
    # Bilinear sampling would blend edge pixels with PIL's black border:
    # extend the valid region with `fill` instead.
    pil = _pad_with(pil, fill)
    affine = compose_affines(affine, scale_translate_affine(np.ones(2), np.array([-1.0, -1.0])))
  inverse = invert_affine(affine)
  out = pil.transform((out_w, out_h), Image.Transform.AFFINE, _pil_coefficients(inverse),
                      resample=Image.Resampling.BILINEAR, fillcolor=tuple(int(v) for v in fill))
  return np.asarray(out)


def _pad_with(pil: Image.Image, fill) -> Image.Image:
  padded = Image.new("RGB", (pil.size[0] + 2, pil.size[1] + 2), tuple(int(v) for v in fill))
  padded.paste(pil, (1, 1))
  return padded


def image_width(image) -> int:
  return image.size[0] if isinstance(image, Image.Image) else np.shape(image)[1]


def image_height(image) -> int:
  return image.size[1] if isinstance(image, Image.Image) else np.shape(image)[0]


def warp_image(image: jax.Array, affine: jax.Array, *, out_height: int, out_width: int,
               fill=0.0) -> jax.Array:
  """Bilinear warp of one (H, W, C) image through a source -> destination affine.

  Pure jax (gathers), so it can be jitted and vmapped over a batch. Pixels
  whose source lies outside the image blend towards `fill`, as if the image
  were surrounded by `fill`.

  Args:
    image: (H, W, C) float array.
    affine: (2, 3) source -> destination affine.
    out_height: destination height.
    out_width: destination width.
    fill: scalar or (C,) value outside the source image.

  Returns:
    (out_height, out_width, C) array of the image's dtype.
  """
  height, width, channels = image.shape
  inverse = invert_affine(affine.astype(jnp.float32))
  ys, xs = jnp.meshgrid(jnp.arange(out_height, dtype=jnp.float32),
                        jnp.arange(out_width, dtype=jnp.float32), indexing="ij")
  src = apply_affine(inverse, jnp.stack([xs, ys], axis=-1).reshape(-1, 2))
  x0 = jnp.floor(src[:, 0])
  y0 = jnp.floor(src[:, 1])
  fx = src[:, 0] - x0
  fy = src[:, 1] - y0
  flat = image.reshape(height * width, channels)
  fill = jnp.broadcast_to(jnp.asarray(fill, image.dtype), (channels,))
  out = jnp.zeros((out_height * out_width, channels), image.dtype)
  for dy, wy in ((0, 1 - fy), (1, fy)):
    for dx, wx in ((0, 1 - fx), (1, fx)):
      xi = (x0 + dx).astype(jnp.int32)
      yi = (y0 + dy).astype(jnp.int32)
      inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
      index = jnp.clip(yi, 0, height - 1) * width + jnp.clip(xi, 0, width - 1)
      value = jnp.where(inside[:, None], flat[index], fill)
      out = out + (wx * wy)[:, None].astype(image.dtype) * value
  return out.reshape(out_height, out_width, channels)


def crop_scale(crop_to_original) -> np.ndarray:
  """Original pixels per crop pixel (B,) of (B, 2, 3) similarity affines."""
  return np.sqrt(np.abs(np.linalg.det(np.asarray(crop_to_original, np.float64)[..., :2])))


def to_original(points, crop_to_original) -> np.ndarray:
  """(B, K, 2) crop pixels -> original image pixels, in float64 (host)."""
  return apply_affine(np.asarray(crop_to_original, np.float64),
                      np.asarray(points, np.float64))
