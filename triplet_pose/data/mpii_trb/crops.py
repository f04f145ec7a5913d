"""The two person crops of `mpii_trb`, and one example from a person and its image.

* `mpii`: the standard protocol (Newell et al.): a square box of side
  200 x scale around the person centre, after the usual adjustment
  (centre moved down by 15 x scale, scale x 1.25), resized to 256.
* `thesis`: the thesis preprocessing: the box around all the person's
  annotated keypoints (joints and, when matched, contour points) plus 50 px,
  clipped to the image, its longer side scaled to 256, and white padding
  around it to 256 x 256.
"""

from __future__ import annotations

import numpy as np

from triplet_pose import keypoints as kp
from triplet_pose import transforms
from triplet_pose.data.mpii_trb import annotations
from triplet_pose.data.mpii_trb import features

CROPS = ("mpii", "thesis")
MPII_CENTER_SHIFT = 15.0
MPII_SCALE_FACTOR = 1.25
THESIS_PADDING = 50
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)


def mpii_crop(person: annotations.Person, *, out_size: int = features.CROP_SIZE) -> np.ndarray:
  """Original -> crop affine of the standard MPII crop."""
  center = person.center + np.array([0.0, MPII_CENTER_SHIFT * person.scale])
  side = 200.0 * person.scale * MPII_SCALE_FACTOR
  return transforms.center_scale_affine(center, side, out_size)


def thesis_box(points: np.ndarray, *, width: int, height: int,
               padding: int = THESIS_PADDING) -> np.ndarray:
  """Inclusive pixel box (x0, y0, x1, y1) around points + padding, in the image."""
  lo = np.floor(points.min(axis=0) - padding)
  hi = np.ceil(points.max(axis=0) + padding)
  lo = np.clip(lo, 0, [width - 1, height - 1])
  hi = np.clip(hi, 0, [width - 1, height - 1])
  return np.concatenate([lo, hi]).astype(np.int64)


def make_example(image: np.ndarray, person: annotations.Person,
                 trb: annotations.TrbPerson | None, *, crop: str) -> dict:
  """The features of one person (see `features.feature_dict`).

  Args:
    image: the original (H, W, 3) uint8 image.
    person: its MPII annotation (coordinates checked finite by the caller).
    trb: the matched TRB person, or None.
    crop: 'mpii' or 'thesis'.

  Returns:
    A dict of numpy arrays; `image` is already JPEG-encoded.
  """
  height, width = image.shape[:2]
  annotated = person.joints_visible > 0
  contour = np.zeros((kp.NUM_CONTOUR, 2))
  contour_visible = np.zeros(kp.NUM_CONTOUR, np.float32)
  if trb is not None:
    contour, contour_visible = trb.contour, trb.contour_visible
  if crop == "mpii":
    affine = mpii_crop(person)
    source_box, fill = None, BLACK
  elif crop == "thesis":
    points = np.concatenate([person.joints[annotated], contour[contour_visible > 0]])
    source_box = thesis_box(points, width=width, height=height)
    affine = transforms.box_affine(source_box, features.CROP_SIZE)
    fill = WHITE
  else:
    raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
  pixels = transforms.warp_image_np(image, affine, out_size=features.CROP_SIZE, fill=fill,
                                    source_box=source_box)
  zoom = float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))
  joints = np.where(annotated[:, None], transforms.apply_affine(affine, person.joints), 0.0)
  contour = np.where(contour_visible[:, None] > 0, transforms.apply_affine(affine, contour), 0.0)
  return {
      "image": features.encode_jpeg(pixels),
      "joints": joints.astype(np.float32),
      "joints_visible": person.joints_visible.astype(np.float32),
      "contour": contour.astype(np.float32),
      "contour_visible": contour_visible.astype(np.float32),
      "head_size": np.float32(person.head_size * zoom),
      "crop_to_original": transforms.invert_affine(affine).astype(np.float32),
      "image_name": person.image,
      "person_index": np.int32(person.person_index),
  }
