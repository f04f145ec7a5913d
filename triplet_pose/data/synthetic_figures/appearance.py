"""Appearance of the synthetic figures: colours, clothing textures, backgrounds, noise.

Patterns and noise come from banks built once per process from fixed seeds;
a figure crops random windows of them, which costs far less than computing
a pattern per figure (the dataset is built in about a minute).
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageChops, ImageDraw

SIZE = 256


def random_colour(rng, lo=0, hi=256) -> tuple[int, int, int]:
  return tuple(int(v) for v in rng.integers(lo, hi, size=3))


def random_skin(rng) -> tuple[int, int, int]:
  t = rng.uniform()
  light, dark = np.array([241, 194, 160]), np.array([84, 52, 34])
  return tuple(int(v) for v in light * (1 - t) + dark * t + rng.integers(-12, 13, size=3))


@functools.lru_cache(maxsize=None)
def _pattern_bank() -> tuple[Image.Image, ...]:
  """Stripe and check masks (L images, 0 or 180), bigger than a crop.

  Built once per process from a fixed seed; a texture crops a random window
  of one, which is much cheaper than computing a pattern per figure.
  """
  rng = np.random.default_rng(1234)
  side = int(SIZE * 1.5)
  yy, xx = np.mgrid[:side, :side].astype(np.float32)
  bank = []
  for k in range(16):
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(6, 30)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    if k % 3 == 2:
      v = -xx * np.sin(angle) + yy * np.cos(angle)
      on = (np.floor(u / period) + np.floor(v / period)) % 2 > 0
    else:
      on = np.sin(u * 2 * np.pi / period) > 0
    bank.append(Image.fromarray(np.where(on, 180, 0).astype(np.uint8)))
  return tuple(bank)


@functools.lru_cache(maxsize=None)
def _noise_bank() -> tuple[Image.Image, ...]:
  """RGB images of 128 + Gaussian noise (sigma 2, 4, 6), bigger than a crop."""
  rng = np.random.default_rng(4321)
  side = int(SIZE * 1.5)
  return tuple(Image.fromarray(np.clip(128 + rng.normal(0, sigma, (side, side, 3)), 0, 255)
                               .astype(np.uint8)) for sigma in (2, 4, 6))


def _window(rng, image: Image.Image, size: int) -> Image.Image:
  x, y = rng.integers(0, image.size[0] - size + 1, size=2)
  return image.crop((int(x), int(y), int(x) + size, int(y) + size))


def texture(rng, base_colour, *, size=SIZE) -> Image.Image:
  """A size x size RGB pattern around `base_colour`: flat, stripes, checks or noise."""
  kind = rng.choice(["flat", "pattern", "noise"], p=[0.35, 0.4, 0.25])
  base = Image.new("RGB", (size, size), tuple(int(v) for v in base_colour))
  if kind == "flat":
    return base
  other = Image.new("RGB", (size, size), random_colour(rng))
  if kind == "noise":
    small = rng.integers(0, 150, size=(int(rng.integers(4, 33)),) * 2, dtype=np.uint8)
    mask = Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)
  else:
    bank = _pattern_bank()
    mask = _window(rng, bank[int(rng.integers(len(bank)))], size)
  return Image.composite(other, base, mask)


def add_noise(rng, image: Image.Image) -> Image.Image:
  """Adds Gaussian pixel noise (sigma 0, 2, 4 or 6) from a pre-computed bank."""
  level = int(rng.integers(0, 4))
  if level == 0:
    return image
  noise = _window(rng, _noise_bank()[level - 1], image.size[0])
  return ImageChops.add(image, noise, scale=1.0, offset=-128)


def background(rng, *, size=SIZE, clutter: float = 1.0) -> Image.Image:
  """A textured background with clutter (shapes, lines, distractor limbs).

  `clutter` in [0, 1] scales the number of shapes and distractors (0: none).
  """
  image = texture(rng, random_colour(rng))
  # Low-frequency shading so flat backgrounds are not uniform.
  shade = np.asarray(Image.fromarray(rng.integers(150, 256, size=(3, 3), dtype=np.uint8)).resize(
      (size, size), Image.Resampling.BILINEAR))
  image = ImageChops.multiply(image, Image.fromarray(shade).convert("RGB"))
  draw = ImageDraw.Draw(image)
  for _ in range(int(round(rng.integers(2, 9) * clutter))):
    x0, y0 = rng.uniform(-0.2, 1.0, size=2) * size
    w, h = rng.uniform(0.05, 0.5, size=2) * size
    kind = rng.integers(0, 4)
    fill = random_colour(rng)
    if kind == 0:
      draw.ellipse([x0, y0, x0 + w, y0 + h], fill=fill)
    elif kind == 1:
      draw.rectangle([x0, y0, x0 + w, y0 + h], fill=fill)
    elif kind == 2:
      pts = rng.uniform(-0.1, 1.1, size=(rng.integers(3, 6), 2)) * size
      draw.polygon([tuple(p) for p in pts], fill=fill)
    else:
      draw.line([(x0, y0), (x0 + w, y0 + h)], fill=fill, width=int(rng.integers(2, 8)))
  for _ in range(int(round(rng.integers(0, 3) * clutter))):  # limb-like distractors
    p = rng.uniform(0, 1, size=2) * size
    q = p + rng.normal(0, 0.2, size=2) * size
    width = int(rng.uniform(0.04, 0.1) * size)
    fill = random_skin(rng) if rng.uniform() < 0.5 else random_colour(rng)
    draw.line([tuple(p), tuple(q)], fill=fill, width=width)
    for c in (p, q):
      r = width / 2
      draw.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=fill)
  return image
