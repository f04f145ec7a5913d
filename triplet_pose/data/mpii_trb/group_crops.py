"""One example per MPII image with every annotated person (`mpii_trb/multi_person`).

The crop is the square around all the image's persons: the union of their
standard MPII boxes (`crops.mpii_crop`: side 200 x 1.25 x scale around the
adjusted centre), squared about its centre and resized to 256, with black
padding. Every person keeps its own head size (scaled with the crop), its
MPII-TRB contour points when matched, and a box around its annotated joints.
Depth and occlusion are not annotated in MPII (-1).
"""

from __future__ import annotations

import numpy as np

from triplet_pose import keypoints as kp
from triplet_pose import transforms
from triplet_pose.data import scene_features
from triplet_pose.data.mpii_trb import annotations
from triplet_pose.data.mpii_trb import crops
from triplet_pose.data.mpii_trb import features


def group_affine(persons: list[annotations.Person], *,
                 out_size: int = scene_features.SIZE) -> np.ndarray:
  """Original -> crop affine of the square around every person's MPII box."""
  lows, highs = [], []
  for p in persons:
    center = p.center + np.array([0.0, crops.MPII_CENTER_SHIFT * p.scale])
    half = 100.0 * p.scale * crops.MPII_SCALE_FACTOR
    lows.append(center - half)
    highs.append(center + half)
  lo, hi = np.min(lows, axis=0), np.max(highs, axis=0)
  return transforms.center_scale_affine((lo + hi) / 2, float(np.max(hi - lo)), out_size)


def make_example(image: np.ndarray, persons: list[annotations.Person],
                 trbs: list[annotations.TrbPerson | None]) -> dict:
  """The features (`scene_features.feature_dict(masks=False)`) of one image.

  Args:
    image: the original (H, W, 3) uint8 image.
    persons: its usable MPII persons (coordinates checked by the caller).
    trbs: the TRB match of each person, or None.

  Returns:
    A dict of numpy arrays; `image` is already JPEG-encoded.
  """
  affine = group_affine(persons)
  size = scene_features.SIZE
  pixels = transforms.warp_image_np(image, affine, out_size=size, fill=crops.BLACK)
  zoom = float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))
  joints, visible, contour, contour_visible = [], [], [], []
  for p, trb in zip(persons, trbs):
    annotated = p.joints_visible > 0
    joints.append(np.where(annotated[:, None], transforms.apply_affine(affine, p.joints), 0.0))
    visible.append(p.joints_visible)
    cv = np.zeros(kp.NUM_CONTOUR) if trb is None else trb.contour_visible
    points = np.zeros((kp.NUM_CONTOUR, 2)) if trb is None else trb.contour
    contour.append(np.where(cv[:, None] > 0, transforms.apply_affine(affine, points), 0.0))
    contour_visible.append(cv)
  joints, visible = np.asarray(joints, np.float32), np.asarray(visible, np.float32)
  boxes = scene_features.keypoint_boxes(joints, visible)
  n = len(persons)
  return {
      "image": features.encode_jpeg(pixels),
      "joints": joints,
      "joints_visible": visible,
      "joints_occlusion": np.full((n, kp.NUM_JOINTS), scene_features.UNKNOWN, np.int32),
      "contour": np.asarray(contour, np.float32),
      "contour_visible": np.asarray(contour_visible, np.float32),
      "head_size": np.array([p.head_size * zoom for p in persons], np.float32),
      "boxes": boxes,
      "depth": np.full(n, scene_features.UNKNOWN, np.int32),
      "crowd_index": np.float32(scene_features.crowd_index(joints, visible, boxes)),
      "crop_to_original": transforms.invert_affine(affine).astype(np.float32),
      "image_name": persons[0].image,
  }
