"""Procedural articulated figures with exactly known joints and contour points.

The embedded default dataset: no download, yet every one of the 16 MPII
joints and 26 MPII-TRB contour points is known exactly. A figure is a
front-facing person with a head (face and hair), a neck, a torso, and limbs
that have width and taper; each limb segment is drawn as the quadrilateral
whose corners are its contour points (medial/lateral at each joint), with
round joint caps, hands and feet. Poses respect joint-angle limits;
proportions, clothes, skin, textures, background clutter, distractor limbs,
foreshortening, in-plane tilt and the depth order of limbs (self-occlusion)
vary. Each example is a pure function of (seed, index).

Medial/lateral follow anatomy for a person facing the camera: the medial
side of a limb hanging down faces the body's midline, and limbs rotate
rigidly from there (so an arm raised overhead shows its armpit side outward).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from triplet_pose import keypoints as kp
from triplet_pose.data.mpii_trb import features
from triplet_pose.data.synthetic_figures import appearance

SIZE = 256
J = kp.JOINT_INDEX
RIGHT_LIMBS = ("right_thigh", "right_shin", "right_upper_arm", "right_forearm")


def _unit(v: np.ndarray) -> np.ndarray:
  return v / np.linalg.norm(v)


def _normal(d: np.ndarray) -> np.ndarray:
  """d rotated by +90 degrees on screen (y down)."""
  return np.array([-d[1], d[0]])


def _rotate(d: np.ndarray, angle: float) -> np.ndarray:
  c, s = np.cos(angle), np.sin(angle)
  return np.array([c * d[0] - s * d[1], s * d[0] + c * d[1]])


def sample_pose(rng: np.random.Generator) -> dict:
  """Joints (16, 2) and limb widths in body units (torso length 1), y down.

  Returns:
    dict(joints, widths (16,) limb width at each joint, neck_width,
    head_width, shoulder_width, hip_width, feet directions).
  """
  deg = np.pi / 180
  tilt = rng.normal(0, 12 * deg) if rng.uniform() < 0.8 else rng.uniform(-70, 70) * deg
  up = np.array([np.sin(tilt), -np.cos(tilt)])
  right = np.array([-np.cos(tilt), -np.sin(tilt)])  # the person's right = screen left
  down = -up
  j = np.zeros((kp.NUM_JOINTS, 2))
  hip_half = rng.uniform(0.17, 0.26)
  shoulder_half = rng.uniform(0.30, 0.42)
  lean = _rotate(up, rng.normal(0, 6 * deg))
  j[J["pelvis"]] = (0.0, 0.0)
  j[J["thorax"]] = lean * rng.uniform(0.95, 1.05)
  j[J["r_hip"]] = j[J["pelvis"]] + hip_half * right + 0.04 * down
  j[J["l_hip"]] = j[J["pelvis"]] - hip_half * right + 0.04 * down
  j[J["r_shoulder"]] = j[J["thorax"]] + shoulder_half * right + 0.06 * down
  j[J["l_shoulder"]] = j[J["thorax"]] - shoulder_half * right + 0.06 * down
  neck_dir = _rotate(lean, rng.normal(0, 10 * deg))
  j[J["upper_neck"]] = j[J["thorax"]] + rng.uniform(0.2, 0.28) * neck_dir
  head_len = rng.uniform(0.48, 0.6)
  j[J["head_top"]] = j[J["upper_neck"]] + head_len * _rotate(neck_dir, rng.normal(0, 10 * deg))

  widths = np.zeros(kp.NUM_JOINTS)
  thigh_w = rng.uniform(0.26, 0.36)
  arm_w = rng.uniform(0.17, 0.23)
  feet = {}
  for side, sign in (("r", 1.0), ("l", -1.0)):
    outward = sign * right
    # Legs: thigh outward angle from straight down, knee bend (signed).
    a_thigh = rng.uniform(-20, 70) * deg if rng.uniform() < 0.85 else rng.uniform(-40, 110) * deg
    d = np.cos(a_thigh) * down + np.sin(a_thigh) * outward
    fore = lambda: 1.0 if rng.uniform() < 0.7 else rng.uniform(0.6, 1.0)
    j[J[f"{side}_knee"]] = j[J[f"{side}_hip"]] + rng.uniform(0.8, 0.95) * fore() * d
    bend = rng.uniform(-20, 110) * deg * (1 if rng.uniform() < 0.5 else -0.5)
    d = _rotate(d, sign * bend)
    j[J[f"{side}_ankle"]] = j[J[f"{side}_knee"]] + rng.uniform(0.75, 0.9) * fore() * d
    feet[side] = _unit(_rotate(d, sign * (80 + rng.uniform(-25, 25)) * deg * rng.choice([-1, 1])))
    widths[J[f"{side}_hip"]] = thigh_w
    widths[J[f"{side}_knee"]] = thigh_w * rng.uniform(0.6, 0.7)
    widths[J[f"{side}_ankle"]] = thigh_w * rng.uniform(0.36, 0.44)
    # Arms: upper arm outward angle from down (up to overhead), elbow bend.
    a_arm = rng.uniform(-35, 185) * deg
    d = np.cos(a_arm) * down + np.sin(a_arm) * outward
    j[J[f"{side}_elbow"]] = j[J[f"{side}_shoulder"]] + rng.uniform(0.55, 0.68) * fore() * d
    d = _rotate(d, sign * rng.uniform(-150, 150) * deg)
    j[J[f"{side}_wrist"]] = j[J[f"{side}_elbow"]] + rng.uniform(0.5, 0.62) * fore() * d
    widths[J[f"{side}_shoulder"]] = arm_w
    widths[J[f"{side}_elbow"]] = arm_w * rng.uniform(0.75, 0.85)
    widths[J[f"{side}_wrist"]] = arm_w * rng.uniform(0.55, 0.65)
  return dict(joints=j, widths=widths, neck_width=rng.uniform(0.22, 0.28),
              head_width=head_len * rng.uniform(0.72, 0.82), hip_half=hip_half,
              shoulder_half=shoulder_half, up=up, right=right, feet=feet)


def contour_points(joints: np.ndarray, widths: np.ndarray, neck_width: float) -> np.ndarray:
  """The 26 contour points (26, 2) of a figure: the limb outline at each joint.

  At a joint shared by two segments (knee, elbow) the outline point lies on
  the bisector of the two segments' normals.
  """
  normals = {}  # (limb-side point index) -> accumulated normal
  for name, seg in kp.LIMB_SEGMENTS.items():
    a, b = seg["joints"]
    n = _normal(_unit(joints[b] - joints[a]))
    medial = -n if name in RIGHT_LIMBS else n
    for end, joint in ((0, a), (1, b)):
      for side, sign in (("medial", 1.0), ("lateral", -1.0)):
        c = seg[side][end]
        normals.setdefault(c, []).append(sign * medial)
  contour = np.zeros((kp.NUM_CONTOUR, 2))
  for c, ns in normals.items():
    joint = kp.CONTOUR_PARENT_JOINT[c]
    contour[c] = joints[joint] + 0.5 * widths[joint] * _unit(np.sum(ns, axis=0))
  neck_dir = _unit(joints[J["upper_neck"]] - joints[J["thorax"]])
  person_right = -_normal(neck_dir)  # neck pointing up: the person's right is screen left
  half = 0.5 * neck_width * person_right
  contour[kp.CONTOUR_INDEX["right_neck"]] = joints[J["upper_neck"]] + half
  contour[kp.CONTOUR_INDEX["left_neck"]] = joints[J["upper_neck"]] - half
  return contour


# --------------------------------------------------------------------------
# Drawing


def _ellipse(center, axis, half_major, half_minor, num=28) -> np.ndarray:
  """Polygon (num, 2) of an ellipse whose major axis is the unit vector `axis`."""
  t = np.linspace(0, 2 * np.pi, num, endpoint=False)[:, None]
  return center + np.cos(t) * half_major * axis + np.sin(t) * half_minor * _normal(axis)


def _disc(center, radius, num=16) -> np.ndarray:
  return _ellipse(center, np.array([1.0, 0.0]), radius, radius, num)


def _darker(colour, factor=0.55) -> tuple[int, int, int]:
  return tuple(int(c * factor) for c in colour)


class Canvas:
  """Draws polygons in flat colours or textures onto a PIL image.

  With a `mask` ('L' image of the same size), everything drawn is also
  filled with 255 there: the silhouette of what was drawn (scenes use one
  per figure).
  """

  def __init__(self, image: Image.Image, transform, mask: Image.Image | None = None):
    self.image = image
    self.draw = ImageDraw.Draw(image)
    self.transform = transform  # body units -> pixels
    self.mask_draw = None if mask is None else ImageDraw.Draw(mask)

  def fill(self, polygons, material) -> None:
    colour, texture = material
    polys = [[tuple(p) for p in self.transform(np.asarray(poly))] for poly in polygons]
    if self.mask_draw is not None:
      for poly in polys:
        self.mask_draw.polygon(poly, fill=255)
    if texture is None:
      for poly in polys:
        self.draw.polygon(poly, fill=colour)
      return
    # Only the polygons' bounding box is masked and pasted.
    points = np.concatenate([np.asarray(poly) for poly in polys])
    x0, y0 = np.clip(np.floor(points.min(0)).astype(int) - 1, 0, None)
    x1, y1 = np.minimum(np.ceil(points.max(0)).astype(int) + 2, self.image.size)
    if x1 <= x0 or y1 <= y0:
      return
    mask = Image.new("L", (int(x1 - x0), int(y1 - y0)), 0)
    mask_draw = ImageDraw.Draw(mask)
    for poly in polys:
      mask_draw.polygon([(x - x0, y - y0) for x, y in poly], fill=255)
    box = (int(x0), int(y0), int(x1), int(y1))
    self.image.paste(texture.crop(box), box, mask)

  def line(self, points, colour, width) -> None:
    xy = [tuple(p) for p in self.transform(np.asarray(points))]
    self.draw.line(xy, fill=colour, width=width)
    if self.mask_draw is not None:
      self.mask_draw.line(xy, fill=255, width=width)


def figure_shapes(pose: dict) -> dict:
  """The outline of a figure in body units: contour points, head, hands, feet.

  Returns:
    dict(contour (26, 2), head, hands, feet (polygons), head_center,
    head_axis, head_len).
  """
  joints, widths = pose["joints"], pose["widths"]
  contour = contour_points(joints, widths, pose["neck_width"])
  # Head, hands and feet (body units).
  neck, top = joints[J["upper_neck"]], joints[J["head_top"]]
  head_axis = _unit(top - neck)
  head_len = np.linalg.norm(top - neck)
  head_center = neck + 0.55 * (top - neck)
  head = _ellipse(head_center, head_axis, 0.45 * head_len, pose["head_width"] / 2)
  hands, feet = [], []
  for side in ("r", "l"):
    wrist, elbow = joints[J[f"{side}_wrist"]], joints[J[f"{side}_elbow"]]
    d = _unit(wrist - elbow)
    w = widths[J[f"{side}_wrist"]]
    hands.append(_ellipse(wrist + 0.55 * w * d, d, 0.85 * w, 0.55 * w, 16))
    ankle = joints[J[f"{side}_ankle"]]
    w = widths[J[f"{side}_ankle"]]
    f = pose["feet"][side]
    feet.append(_ellipse(ankle + 0.5 * w * f, f, 1.0 * w, 0.5 * w, 16))
  return dict(contour=contour, head=head, hands=hands, feet=feet, head_center=head_center,
              head_axis=head_axis, head_len=head_len)


def outline_points(shapes: dict, joints: np.ndarray) -> np.ndarray:
  """Every point of a figure's outline (joints, contour, head, hands, feet)."""
  return np.concatenate([joints, shapes["contour"], shapes["head"], *shapes["hands"],
                         *shapes["feet"]])


def draw_figure(canvas: Canvas, rng: np.random.Generator, pose: dict, shapes: dict, *,
                scale: float) -> None:
  """Draws one figure (clothes, skin, limbs in a random depth order) on `canvas`.

  Args:
    canvas: maps body units to pixels (`scale` pixels per unit).
    rng: draws the figure's appearance and the depth order of its limbs.
    pose: from `sample_pose`.
    shapes: from `figure_shapes`.
    scale: pixels per body unit (line widths follow it).
  """
  joints, widths = pose["joints"], pose["widths"]
  up, right = pose["up"], pose["right"]
  contour, head, hands, feet = (shapes[k] for k in ("contour", "head", "hands", "feet"))
  head_center, head_axis, head_len = shapes["head_center"], shapes["head_axis"], shapes["head_len"]
  neck = joints[J["upper_neck"]]
  skin = (appearance.random_skin(rng), None)
  top_colour, bottom_colour = appearance.random_colour(rng), appearance.random_colour(rng, 0, 200)
  top = (top_colour, appearance.texture(rng, top_colour) if rng.uniform() < 0.5 else None)
  bottom = (bottom_colour, appearance.texture(rng, bottom_colour) if rng.uniform() < 0.3 else None)
  shoes = (appearance.random_colour(rng, 0, 90), None)
  hair = (appearance.random_colour(rng, 0, 120), None)
  sleeves = rng.choice(["long", "short", "none"], p=[0.45, 0.35, 0.2])
  trousers = rng.uniform() < 0.7
  outline = int(rng.integers(0, 3))  # outline width in pixels, 0 = none
  material = {
      "thigh": bottom, "shin": bottom if trousers else skin,
      "upper_arm": skin if sleeves == "none" else top,
      "forearm": top if sleeves == "long" else skin,
  }

  def limb(name):
    seg = kp.LIMB_SEGMENTS[name]
    (m0, m1), (l0, l1) = seg["medial"], seg["lateral"]
    a, b = seg["joints"]
    mat = material[name.split("_", 1)[1]]
    quad = [contour[m0], contour[m1], contour[l1], contour[l0]]
    canvas.fill([quad, _disc(joints[a], widths[a] / 2), _disc(joints[b], widths[b] / 2)], mat)
    if outline:
      edge = _darker(mat[0])
      canvas.line([contour[m0], contour[m1]], edge, outline)
      canvas.line([contour[l0], contour[l1]], edge, outline)

  def leg(side):
    s = "right" if side == "r" else "left"
    limb(f"{s}_thigh")
    limb(f"{s}_shin")
    canvas.fill([feet[0 if side == "r" else 1]], shoes)

  def arm(side):
    s = "right" if side == "r" else "left"
    limb(f"{s}_upper_arm")
    limb(f"{s}_forearm")
    canvas.fill([hands[0 if side == "r" else 1]], skin)

  def torso():
    rs, ls = joints[J["r_shoulder"]], joints[J["l_shoulder"]]
    rh, lh = joints[J["r_hip"]], joints[J["l_hip"]]
    aw, tw = widths[J["r_shoulder"]], widths[J["r_hip"]]
    down = -up
    waist_r = 0.45 * rs + 0.55 * rh + 0.03 * right
    waist_l = 0.45 * ls + 0.55 * lh - 0.03 * right
    chest = [rs + 0.3 * aw * right + 0.4 * aw * up, joints[J["thorax"]] + 0.05 * up,
             ls - 0.3 * aw * right + 0.4 * aw * up, ls - 0.45 * aw * right, waist_l, waist_r,
             rs + 0.45 * aw * right]
    pelvis = [waist_r, waist_l, lh - 0.5 * tw * right, lh + 0.4 * tw * down,
              joints[J["pelvis"]] + 0.3 * tw * down, rh + 0.4 * tw * down, rh + 0.5 * tw * right]
    canvas.fill([pelvis], bottom)
    canvas.fill([chest], top)
    if outline:
      canvas.line(chest + chest[:1], _darker(top[0]), outline)

  def head_and_neck():
    th = joints[J["thorax"]]
    n = -_normal(_unit(neck - th))
    w = pose["neck_width"] / 2
    canvas.fill([[neck + w * n, neck - w * n, th - w * n, th + w * n]], skin)
    canvas.fill([head], skin)
    if rng.uniform() < 0.85:  # hair over the top of the head
      canvas.fill([head[np.r_[0:6, 22:28]]], hair)
    side = _normal(head_axis)
    for sign in (1, -1):  # eyes: the figure faces the camera
      eye = head_center + 0.02 * head_len * head_axis + sign * 0.16 * head_len * side
      canvas.fill([_disc(eye, 0.045 * head_len, 8)], ((20, 20, 20), None))
    mouth = head_center - 0.22 * head_len * head_axis
    canvas.line([mouth - 0.1 * head_len * side, mouth + 0.1 * head_len * side],
                _darker(skin[0], 0.5), max(1, int(0.02 * head_len * scale)))

  # Depth order: legs mostly behind the torso, arms in front or behind, the
  # head in front of the torso; later parts hide earlier ones.
  parts = [(-1.0 if rng.uniform() < 0.85 else 0.5, lambda s=s: leg(s)) for s in ("r", "l")]
  parts += [(1.0 if rng.uniform() < 0.65 else -2.0, lambda s=s: arm(s)) for s in ("r", "l")]
  parts += [(0.0, torso), (0.3, head_and_neck)]
  order = sorted(range(len(parts)), key=lambda i: (parts[i][0], rng.uniform()))
  for i in order:
    parts[i][1]()


def make_example(seed: int, index: int, *, stream: int = 0, size: int = SIZE,
                 clutter: float = 1.0) -> dict:
  """Example `index` of the dataset drawn from `seed` (and `stream`: one per split).

  `clutter` in [0, 1] scales background shapes, distractor limbs and
  occluding objects (1: the default dataset, 0: a plain textured background).

  Returns:
    dict of numpy arrays with the dataset's features (`image` as an
    (size, size, 3) uint8 array, not yet encoded); all 16 joints and 26
    contour points are annotated (visible = 1), whether or not a part in
    front hides them, as in MPII.
  """
  rng = np.random.default_rng([seed, stream, index])
  pose = sample_pose(rng)
  joints = pose["joints"]
  shapes = figure_shapes(pose)
  contour, head_len = shapes["contour"], shapes["head_len"]

  # Fit the figure into the frame: it fills most of it, as MPII crops do.
  every = outline_points(shapes, joints)
  lo, hi = every.min(0), every.max(0)
  scale = rng.uniform(0.72, 0.92) * size / np.max(hi - lo)
  slack = size - 1 - scale * (hi - lo)
  offset = rng.uniform(0.15, 0.85, size=2) * slack - scale * lo
  to_px = lambda p: p * scale + offset

  canvas = Canvas(appearance.background(rng, clutter=clutter), to_px)
  draw_figure(canvas, rng, pose, shapes, scale=scale)

  if rng.uniform() < 0.2 * clutter:  # an object in front of part of the figure
    c = to_px(joints[rng.integers(kp.NUM_JOINTS)]) + rng.normal(0, 0.05 * size, 2)
    r = rng.uniform(0.05, 0.12, size=2) * size
    canvas.draw.rectangle([c[0] - r[0], c[1] - r[1], c[0] + r[0], c[1] + r[1]],
                          fill=appearance.random_colour(rng))

  image = canvas.image
  if rng.uniform() < 0.3:
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.0)))
  image = appearance.add_noise(rng, image)
  joints_px, contour_px = to_px(joints), to_px(contour)
  return {
      "image": np.asarray(image),
      "joints": joints_px.astype(np.float32),
      "joints_visible": np.ones(kp.NUM_JOINTS, np.float32),
      "contour": contour_px.astype(np.float32),
      "contour_visible": np.ones(kp.NUM_CONTOUR, np.float32),
      # MPII's PCKh normaliser is 0.75 x the upper-neck to head-top distance
      # (see annotations.JSON_HEAD_SIZE_PER_SCALE); the same here.
      "head_size": np.float32(0.75 * head_len * scale),
      "crop_to_original": np.eye(2, 3, dtype=np.float32),
      "image_name": f"synthetic_{seed}_{stream}_{index:06d}",
      "person_index": np.int32(0),
  }


def encoded_example(args: tuple[int, int, int] | tuple[int, int, int, float]) -> tuple[int, dict]:
  """(seed, stream, index) -> (index, example with a JPEG-encoded image).

  Top level and light to import, so that a process pool can run it.
  """
  seed, stream, index, *rest = args
  example = make_example(seed, index, stream=stream, clutter=rest[0] if rest else 1.0)
  example["image"] = features.encode_jpeg(example["image"])
  return index, example
