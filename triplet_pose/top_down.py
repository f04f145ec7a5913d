"""Single-person models run top-down on each person of an image.

* `contours_per_person`: bottom-up grouping (`grouping.py`) gives each
  person's joints; the triplet model then runs on each person as in the
  thesis's pipeline: the box around the person's joints plus 50 pixels
  (`mpii_trb.crops.thesis_box`), its longer side scaled to the model's
  input size, white padding, and the 16 joints rendered as the model's
  input heatmaps. Its 26 contour points are mapped back to the image, so
  every person gets a contour.
* `joints_on_boxes`: the single-person baseline of multi-person AP: the
  joint model on the crop of each ground-truth box (`box_crops`), its joints
  mapped back with their confidence as score.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from triplet_pose import keypoints as kp
from triplet_pose import transforms
from triplet_pose.data.mpii_trb import crops

# The share of a crop's side a person's box fills in `box_crops`: the MPII
# standard crop is 1.25 times the person's height (`crops.MPII_SCALE_FACTOR`),
# and `synthetic_figures` fits each figure into 72-92% of its frame, so the
# single-person model meets each person at the size it was trained on.
# (The thesis crop, box + 50 px, would frame a 60 px person in a 128 px scene
# as the whole scene.)
PERSON_FILL = 1.0 / crops.MPII_SCALE_FACTOR

# (variables, crops (P, S, S, 3), joints (P, 16, 2), visible (P, 16)) ->
# {'keypoints': {'contour': (P, 26, 2)}, 'confidence': {'contour': (P, 26)}}:
# `inference.make_inference_fn(PoseModels(triplet=...), ground_truth_joints=True)`.
TripletFn = Callable[..., dict[str, Any]]


def person_crops(image: np.ndarray, persons: np.ndarray, *, size: int
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Each person's thesis crop, around its joints (or any points).

  Args:
    image: (H, W, 3) uint8.
    persons: (P, N, 2 or 3) points in image pixels (NaN: missing), e.g.
      joints x, y, score, or box corners.
    size: crop side.

  Returns:
    crops: (P, size, size, 3) uint8; affines: (P, 2, 3) image -> crop.
  """
  height, width = image.shape[:2]
  images, affines = [], []
  for person in np.asarray(persons, np.float64):
    found = np.isfinite(person).all(axis=-1)
    box = crops.thesis_box(person[found, :2], width=width, height=height)
    affine = transforms.box_affine(box, size)
    images.append(transforms.warp_image_np(image, affine, out_size=size, fill=crops.WHITE,
                                           source_box=box))
    affines.append(affine)
  return (np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8),
          np.asarray(affines, np.float64).reshape(-1, 2, 3))


def box_crops(image: np.ndarray, boxes: np.ndarray, *, size: int,
              fill: float = PERSON_FILL) -> tuple[np.ndarray, np.ndarray]:
  """Square crops around boxes, each box's longer side `fill` of the crop's.

  The surroundings stay in the crop (neighbours included, as in an MPII
  crop); beyond the image is black.

  Args:
    image: (H, W, 3) uint8.
    boxes: (P, 4) x0, y0, x1, y1 in image pixels.
    size: crop side.
    fill: share of the crop's side the box's longer side takes, in (0, 1].

  Returns:
    crops: (P, size, size, 3) uint8; affines: (P, 2, 3) image -> crop.
  """
  if not 0.0 < fill <= 1.0:
    raise ValueError(f"box_crops: fill must be in (0, 1], got {fill}")
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  center = (boxes[:, :2] + boxes[:, 2:]) / 2
  side = np.max(boxes[:, 2:] - boxes[:, :2], axis=1) + 1
  affines = transforms.center_scale_affine(center, side / fill, size).reshape(-1, 2, 3)
  images = [transforms.warp_image_np(image, a, out_size=size, fill=crops.BLACK) for a in affines]
  return (np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8), affines)


def contours_per_person(triplet_fn: TripletFn, variables: Any, image: np.ndarray,
                        persons: np.ndarray, *, size: int) -> np.ndarray:
  """(P, 26, 3) contour points x, y (image pixels) and confidence of each person.

  Args:
    triplet_fn: the triplet model's inference function (see `TripletFn`).
    variables: its `PoseModels.variables()`.
    image: (H, W, 3) uint8.
    persons: (P, 16, 3) grouped joints in image pixels (NaN: missing).
    size: the triplet model's input size.
  """
  persons = np.asarray(persons, np.float64).reshape(-1, kp.NUM_JOINTS, 3)
  if not len(persons):
    return np.zeros((0, kp.NUM_CONTOUR, 3))
  images, affines = person_crops(image, persons, size=size)
  found = np.isfinite(persons).all(axis=-1)
  joints = np.where(found[..., None], transforms.apply_affine(affines, persons[..., :2]), 0.0)
  out = triplet_fn(variables, images, joints.astype(np.float32), found.astype(np.float32))
  contour = np.asarray(out["keypoints"][kp.CONTOUR.name], np.float64)
  confidence = np.asarray(out["confidence"][kp.CONTOUR.name], np.float64)
  back = transforms.apply_affine(transforms.invert_affine(affines), contour)
  return np.concatenate([back, confidence[..., None]], axis=-1)


def joints_on_boxes(joint_fn: Callable[..., dict[str, Any]], variables: Any,
                    image: np.ndarray, boxes: np.ndarray, *, size: int) -> np.ndarray:
  """(P, 16, 3) joints x, y (image pixels) and confidence, one person per box.

  Args:
    joint_fn: the joint model's inference function
      (`inference.make_inference_fn(PoseModels(joint=...))`), called as
      `joint_fn(variables, crops)`.
    variables: its `PoseModels.variables()`.
    image: (H, W, 3) uint8.
    boxes: (P, 4) x0, y0, x1, y1 in image pixels.
    size: the joint model's input size.
  """
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  if not len(boxes):
    return np.zeros((0, kp.NUM_JOINTS, 3))
  images, affines = box_crops(image, boxes, size=size)
  out = joint_fn(variables, images)
  joints = np.asarray(out["keypoints"][kp.JOINTS.name], np.float64)
  confidence = np.asarray(out["confidence"][kp.JOINTS.name], np.float64)
  back = transforms.apply_affine(transforms.invert_affine(affines), joints)
  return np.concatenate([back, confidence[..., None]], axis=-1)
