"""Features of images with several people, shared by `synthetic_scenes` and
`mpii_trb/multi_person`, and the per-image annotations derived from them.

One example is one image: every person of it, persons first, in variable
number (the input pipeline pads them to a fixed maximum with a
`persons_valid` mask). Coordinates are (x, y) pixels of the stored image,
integer = pixel centre; `crop_to_original` maps them to the original photo.

* `joints_visible` (P, 16) means annotated, as in `mpii_trb`: for synthetic
  scenes, inside the frame; a joint hidden by a nearer person or an occluder
  stays annotated (MPII annotates occluded joints too).
* `joints_occlusion` (P, 16) says why a joint cannot be seen
  (`OCCLUSION_REASONS`; -1 where unknown, as for MPII).
* `crowd_index`: CrowdPose's crowd index of the image; `crowd_bin` its bin.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from triplet_pose import keypoints as kp

SIZE = 256
OCCLUSION_REASONS = ("visible", "out_of_frame", "hidden_by_person", "hidden_by_occluder")
VISIBLE, OUT_OF_FRAME, HIDDEN_BY_PERSON, HIDDEN_BY_OCCLUDER = range(4)
UNKNOWN = -1
# CrowdPose (Li et al. 2019): easy [0, 0.1], medium (0.1, 0.8], hard above.
CROWD_BINS = ("easy", "medium", "hard")
CROWD_EDGES = (0.1, 0.8)
# Share of a person's annotated joints hidden by a nearer person or an occluder.
OCCLUSION_BINS = ("unoccluded", "partly", "heavily")
OCCLUSION_EDGES = (0.0, 1 / 3)
NO_BIN = -1  # a person whose occlusion is unknown (`occlusion_bin`)


def feature_dict(*, masks: bool):
  """A tfds FeaturesDict of one image with several people.

  Args:
    masks: add `instance_map` (the visible person per pixel: 0 none, i + 1
      person i) and `amodal_map` (bit i set where person i's body is, seen
      or hidden); synthetic scenes have them, MPII does not.
  """
  k, c = kp.NUM_JOINTS, kp.NUM_CONTOUR
  tensor = tfds.features.Tensor
  spec = {
      "image": tfds.features.Image(shape=(SIZE, SIZE, 3), encoding_format="jpeg"),
      "joints": tensor(shape=(None, k, 2), dtype=np.float32),
      "joints_visible": tensor(shape=(None, k), dtype=np.float32),
      "joints_occlusion": tensor(shape=(None, k), dtype=np.int32),
      "contour": tensor(shape=(None, c, 2), dtype=np.float32),
      "contour_visible": tensor(shape=(None, c), dtype=np.float32),
      "head_size": tensor(shape=(None,), dtype=np.float32),
      "boxes": tensor(shape=(None, 4), dtype=np.float32),  # x0, y0, x1, y1
      "depth": tensor(shape=(None,), dtype=np.int32),  # 0 = nearest
      "crowd_index": tfds.features.Scalar(dtype=np.float32),
      "crop_to_original": tensor(shape=(2, 3), dtype=np.float32),
      "image_name": tfds.features.Text(),
  }
  if masks:
    spec["instance_map"] = tfds.features.Image(shape=(SIZE, SIZE, 1), encoding_format="png")
    spec["amodal_map"] = tfds.features.Image(shape=(SIZE, SIZE, 1), encoding_format="png")
  return tfds.features.FeaturesDict(spec)


def keypoint_boxes(keypoints: np.ndarray, visible: np.ndarray) -> np.ndarray:
  """(P, 4) x0, y0, x1, y1 around each person's annotated keypoints (NaN: none)."""
  keypoints = np.asarray(keypoints, np.float64)
  shown = np.asarray(visible) > 0
  lo = np.where(shown[..., None], keypoints, np.inf).min(axis=1)
  hi = np.where(shown[..., None], keypoints, -np.inf).max(axis=1)
  boxes = np.concatenate([lo, hi], axis=-1)
  return np.where(shown.any(axis=1)[:, None], boxes, np.nan).astype(np.float32)


def crowd_index(keypoints: np.ndarray, visible: np.ndarray, boxes: np.ndarray) -> float:
  """CrowdPose's crowd index: the mean over persons of (other persons' annotated
  joints inside the person's box) / (the person's own annotated joints).

  Args:
    keypoints: (P, K, 2); visible: (P, K) annotated; boxes: (P, 4).

  Returns:
    The index (0 for one person or nobody).
  """
  keypoints, boxes = np.asarray(keypoints, np.float64), np.asarray(boxes, np.float64)
  shown = np.asarray(visible) > 0
  ratios = []
  for i in range(len(keypoints)):
    own = shown[i].sum()
    if own == 0:
      continue
    x0, y0, x1, y1 = boxes[i]
    x, y = keypoints[..., 0], keypoints[..., 1]
    inside = shown & (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
    inside[i] = False
    ratios.append(inside.sum() / own)
  return float(np.mean(ratios)) if ratios else 0.0


def crowd_bin(index) -> np.ndarray:
  """0 easy, 1 medium, 2 hard (`CROWD_BINS`) of crowd indices."""
  return np.digitize(np.asarray(index, np.float64), CROWD_EDGES, right=True)


def occlusion_fraction(occlusion: np.ndarray, visible: np.ndarray) -> np.ndarray:
  """(P,) share of each person's annotated joints that are hidden; NaN for a
  person with an annotated joint whose reason is `UNKNOWN` (MPII says
  nothing of occlusion), so that such a person falls in no bin."""
  occlusion = np.asarray(occlusion)
  shown = np.asarray(visible) > 0
  hidden = shown & ((occlusion == HIDDEN_BY_PERSON) | (occlusion == HIDDEN_BY_OCCLUDER))
  fraction = hidden.sum(axis=-1) / np.maximum(shown.sum(axis=-1), 1)
  return np.where((shown & (occlusion == UNKNOWN)).any(axis=-1), np.nan, fraction)


def occlusion_bin(fraction) -> np.ndarray:
  """0 unoccluded, 1 partly (up to a third hidden), 2 heavily (`OCCLUSION_BINS`);
  `NO_BIN` where the fraction is unknown (NaN)."""
  fraction = np.asarray(fraction, np.float64)
  bins = np.digitize(fraction, OCCLUSION_EDGES, right=True)
  return np.where(np.isnan(fraction), NO_BIN, bins)
