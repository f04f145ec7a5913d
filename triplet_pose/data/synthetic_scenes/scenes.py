"""Scenes of several synthetic figures, in a depth order, with occluders.

Each figure is drawn by `synthetic_figures` (its pose, outline and
clothes) on a layer of its own with its silhouette; the layers are pasted
from the farthest to the nearest, so a nearer figure hides a farther one.
Occluders (bars, boxes, a table edge) are in front of everyone. Since
every silhouette is known, so is the exact visibility of every keypoint and
why it cannot be seen (`scene_features.OCCLUSION_REASONS`): out of frame,
hidden by a nearer figure, or by an occluder. A figure's own limbs crossing
each other do not count as hiding (as in MPII, self-occluded joints are
annotated and counted visible).

Nearer figures are larger (perspective). A figure is placed only where at
least `MIN_VISIBLE_JOINTS` of its joints can be seen, so nobody is entirely
hidden. Each scene is a pure function of (seed, stream, index).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from triplet_pose.data import scene_features as sf
from triplet_pose.data.mpii_trb import features
from triplet_pose.data.synthetic_figures import appearance
from triplet_pose.data.synthetic_figures import figures

MIN_VISIBLE_JOINTS = 8
PLACEMENT_TRIES = 8
OCCLUDER_KINDS = ("bar", "box", "table")


@dataclasses.dataclass(frozen=True)
class SceneOptions:
  """What scenes look like.

  Attributes:
    min_persons: fewest figures per image.
    max_persons: most figures per image.
    clutter: background clutter in [0, 1] (as `synthetic_figures`).
    occluders: expected number of occluders per image.
    height_range: a lone figure's height as a fraction of the image;
      each further figure shrinks all of them by `crowd_shrink`.
    crowd_shrink: see `height_range`.
    size: image side in pixels.
  """
  min_persons: int = 1
  max_persons: int = 4
  clutter: float = 0.5
  occluders: float = 0.6
  height_range: tuple[float, float] = (0.55, 0.9)
  crowd_shrink: float = 0.2
  size: int = sf.SIZE


def _in_frame(points: np.ndarray, size: int) -> np.ndarray:
  return np.all((points >= 0) & (points <= size - 1), axis=-1)


def _covered(mask: np.ndarray, points: np.ndarray) -> np.ndarray:
  """Whether `mask` (H, W) bool is set under each point (False outside)."""
  size = mask.shape[0]
  inside = _in_frame(points, size)
  ij = np.clip(np.round(points).astype(int), 0, size - 1)
  return inside & mask[ij[..., 1], ij[..., 0]]


def _draw_figure_layer(rng, size: int, height: float, centre: np.ndarray):
  """One figure on a layer of its own: (rgb image, silhouette, record)."""
  pose = figures.sample_pose(rng)
  shapes = figures.figure_shapes(pose)
  outline = figures.outline_points(shapes, pose["joints"])
  lo, hi = outline.min(0), outline.max(0)
  scale = height / np.max(hi - lo)
  offset = centre - scale * (lo + hi) / 2
  to_px = lambda p: p * scale + offset
  layer = Image.new("RGB", (size, size))
  mask = Image.new("L", (size, size), 0)
  figures.draw_figure(figures.Canvas(layer, to_px, mask), rng, pose, shapes, scale=scale)
  record = {"joints": to_px(pose["joints"]), "contour": to_px(shapes["contour"]),
            "head_size": 0.75 * shapes["head_len"] * scale}  # as synthetic_figures
  return layer, np.asarray(mask) > 0, mask, record


def _occluder(rng, size: int):
  """A random bar, box or table edge: (paint(draw, fill), its colour)."""
  kind = OCCLUDER_KINDS[int(rng.integers(len(OCCLUDER_KINDS)))]
  colour = appearance.random_colour(rng)
  if kind == "bar":  # a post or pole, mostly upright
    x = rng.uniform(0, size)
    tilt = rng.normal(0, 0.15) * size
    width = int(rng.uniform(0.03, 0.08) * size)
    paint = lambda d, fill: d.line([(x - tilt, -1), (x + tilt, size)], fill=fill, width=width)
  elif kind == "box":
    c = rng.uniform(0.1, 0.9, 2) * size
    r = rng.uniform(0.06, 0.16, 2) * size
    box = [c[0] - r[0], c[1] - r[1], c[0] + r[0], c[1] + r[1]]
    paint = lambda d, fill: d.rectangle(box, fill=fill)
  else:  # a table edge across the lower part, slightly slanted
    y = rng.uniform(0.62, 0.88) * size
    slope = rng.normal(0, 0.04) * size
    corners = [(-1, y - slope), (size, y + slope), (size, size), (-1, size)]
    paint = lambda d, fill: d.polygon(corners, fill=fill)
  return paint, colour


def make_scene(seed: int, index: int, *, stream: int = 0,
               options: SceneOptions = SceneOptions()) -> dict:
  """Scene `index` of `seed` (and `stream`: one per split).

  Returns:
    The features of `scene_features.feature_dict(masks=True)` as numpy
    arrays, the image (size, size, 3) uint8 not yet encoded, persons
    nearest first.
  """
  o = options
  size = o.size
  rng = np.random.default_rng([seed, stream, index])
  wanted = int(rng.integers(o.min_persons, o.max_persons + 1))
  base = rng.uniform(*o.height_range) * size / (1 + o.crowd_shrink * (wanted - 1))
  # Nearer figures are larger: heights sorted, the largest first (nearest).
  heights = np.sort(base * rng.uniform(0.75, 1.15, wanted))[::-1]
  background = appearance.background(rng, size=size, clutter=o.clutter)
  layers, people = [], []
  nearer = np.zeros((size, size), bool)
  for height in heights:
    for attempt in range(PLACEMENT_TRIES):
      centre = rng.uniform([0.12, 0.3], [0.88, 0.7]) * size
      layer, silhouette, mask, record = _draw_figure_layer(rng, size, height, centre)
      joints = record["joints"]
      seen = _in_frame(joints, size) & ~_covered(nearer, joints)
      # The nearest figure is kept on the last try, so no scene is empty.
      if seen.sum() >= MIN_VISIBLE_JOINTS or (not people and attempt == PLACEMENT_TRIES - 1):
        layers.append((layer, mask))
        people.append(dict(record, silhouette=silhouette))
        nearer |= silhouette
        break
  # Farthest first: a nearer figure's pixels, and its label in the instance
  # map (drawn in the same loop), cover a farther one's.
  image = background
  instance = np.zeros((size, size), np.uint8)
  for i in reversed(range(len(layers))):
    layer, mask = layers[i]
    image.paste(layer, (0, 0), mask)
    instance[people[i]["silhouette"]] = i + 1

  occluder = _place_occluders(rng, size, people, image, o.occluders)
  if rng.uniform() < 0.3:
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.0)))
  image = appearance.add_noise(rng, image)
  instance[occluder] = 0
  return _annotate(np.asarray(image), people, occluder, instance,
                   name=f"scene_{seed}_{stream}_{index:06d}")


def _place_occluders(rng, size: int, people: list[dict], image: Image.Image,
                     rate: float) -> np.ndarray:
  """Draws occluders in front of everyone; returns their mask (H, W) bool.

  An occluder that would leave a figure with fewer than
  `MIN_VISIBLE_JOINTS` joints in sight is not drawn.
  """
  occluder = np.zeros((size, size), bool)
  for _ in range(int(rng.poisson(rate))):
    paint, colour = _occluder(rng, size)
    mask = Image.new("L", (size, size), 0)
    paint(ImageDraw.Draw(mask), 255)
    candidate = occluder | (np.asarray(mask) > 0)
    if all(_seen(p, people[:i], candidate, size).sum() >= MIN_VISIBLE_JOINTS
           for i, p in enumerate(people)):
      paint(ImageDraw.Draw(image), colour)
      occluder = candidate
  return occluder


def _seen(person: dict, nearer_people: list[dict], occluder: np.ndarray, size: int):
  hidden = _occlusion(person["joints"], nearer_people, occluder, size)
  return hidden == sf.VISIBLE


def _occlusion(points: np.ndarray, nearer_people: list[dict], occluder: np.ndarray,
               size: int) -> np.ndarray:
  """Why each point cannot be seen (`scene_features` codes), the nearest cause first."""
  code = np.full(points.shape[:-1], sf.VISIBLE, np.int32)
  by_person = np.zeros(points.shape[:-1], bool)
  for other in nearer_people:
    by_person |= _covered(other["silhouette"], points)
  code[by_person] = sf.HIDDEN_BY_PERSON
  code[_covered(occluder, points)] = sf.HIDDEN_BY_OCCLUDER  # in front of everyone
  code[~_in_frame(points, size)] = sf.OUT_OF_FRAME
  return code


def _annotate(image: np.ndarray, people: list[dict], occluder: np.ndarray,
              instance: np.ndarray, *, name: str) -> dict:
  size = image.shape[0]
  p = len(people)
  joints = np.stack([q["joints"] for q in people]).astype(np.float32)
  contour = np.stack([q["contour"] for q in people]).astype(np.float32)
  occlusion = np.stack([_occlusion(q["joints"], people[:i], occluder, size)
                        for i, q in enumerate(people)])
  joints_visible = (occlusion != sf.OUT_OF_FRAME).astype(np.float32)
  contour_visible = _in_frame(contour, size).astype(np.float32)
  amodal = np.zeros((size, size), np.uint8)
  boxes = np.zeros((p, 4), np.float32)
  for i, person in enumerate(people):
    amodal[person["silhouette"]] |= np.uint8(1 << i)
    ys, xs = np.nonzero(person["silhouette"])
    boxes[i] = (xs.min(), ys.min(), xs.max(), ys.max()) if xs.size else np.nan
  return {
      "image": image,
      "joints": np.where(joints_visible[..., None] > 0, joints, 0.0).astype(np.float32),
      "joints_visible": joints_visible,
      "joints_occlusion": occlusion.astype(np.int32),
      "contour": np.where(contour_visible[..., None] > 0, contour, 0.0).astype(np.float32),
      "contour_visible": contour_visible,
      "head_size": np.array([q["head_size"] for q in people], np.float32),
      "boxes": boxes,
      "depth": np.arange(p, dtype=np.int32),
      "crowd_index": np.float32(sf.crowd_index(joints, joints_visible, boxes)),
      "crop_to_original": np.eye(2, 3, dtype=np.float32),
      "image_name": name,
      "instance_map": instance[..., None],
      "amodal_map": amodal[..., None],
  }


def encoded_scene(args: tuple[int, int, int, SceneOptions]) -> tuple[int, dict]:
  """(seed, stream, index, options) -> (index, scene with a JPEG image).

  Top level and light to import, so that a process pool can run it.
  """
  seed, stream, index, options = args
  scene = make_scene(seed, index, stream=stream, options=options)
  scene["image"] = features.encode_jpeg(scene["image"])
  return index, scene

