"""Keypoint conventions: the single source of names, order, flips, groups and edges.

Every other module imports these constants; nothing re-declares them.

* 16 MPII joints, in MPII order.
* 26 MPII-TRB contour points ("triplets": two points beside most joints),
  grouped by their joint in MPII order, medial before lateral (neck: right
  before left). Pelvis, thorax and head top have no contour points.

A horizontal flip swaps right and left, never medial and lateral.

`JOINTS` and `CONTOUR` bundle each set's names, flip permutation, PCKh
groups and edges as one `KeypointSet`; its `name` is the key the set has in
batches, model outputs and predictions ('joints', 'contour'), so code loops
over sets instead of branching on strings.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Mapping

import jax.numpy as jnp
import numpy as np

JOINT_NAMES: tuple[str, ...] = (
    "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis",
    "thorax", "upper_neck", "head_top", "r_wrist", "r_elbow", "r_shoulder",
    "l_shoulder", "l_elbow", "l_wrist",
)
NUM_JOINTS = len(JOINT_NAMES)
JOINT_INDEX = types.MappingProxyType({n: i for i, n in enumerate(JOINT_NAMES)})

CONTOUR_NAMES: tuple[str, ...] = (
    "medial_right_ankle", "lateral_right_ankle",
    "medial_right_knee", "lateral_right_knee",
    "medial_right_hip", "lateral_right_hip",
    "medial_left_hip", "lateral_left_hip",
    "medial_left_knee", "lateral_left_knee",
    "medial_left_ankle", "lateral_left_ankle",
    "right_neck", "left_neck",
    "medial_right_wrist", "lateral_right_wrist",
    "medial_right_elbow", "lateral_right_elbow",
    "medial_right_shoulder", "lateral_right_shoulder",
    "medial_left_shoulder", "lateral_left_shoulder",
    "medial_left_elbow", "lateral_left_elbow",
    "medial_left_wrist", "lateral_left_wrist",
)
NUM_CONTOUR = len(CONTOUR_NAMES)
CONTOUR_INDEX = types.MappingProxyType({n: i for i, n in enumerate(CONTOUR_NAMES)})

# The joint each contour point sits beside (the neck points belong to upper_neck).
CONTOUR_PARENT_JOINT: tuple[int, ...] = (
    0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 8, 8,
    10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15,
)


def _swap_side(name: str) -> str:
  for a, b in (("right", "left"), ("left", "right")):
    if a in name:
      return name.replace(a, b)
  for a, b in (("r_", "l_"), ("l_", "r_")):
    if name.startswith(a):
      return b + name[len(a):]
  return name


def _flip_permutation(names: tuple[str, ...]) -> tuple[int, ...]:
  index = {n: i for i, n in enumerate(names)}
  return tuple(index[_swap_side(n)] for n in names)


# new[i] = old[FLIP[i]] after mirroring the x axis.
JOINT_FLIP_PERMUTATION: tuple[int, ...] = _flip_permutation(JOINT_NAMES)
CONTOUR_FLIP_PERMUTATION: tuple[int, ...] = _flip_permutation(CONTOUR_NAMES)
assert JOINT_FLIP_PERMUTATION == (5, 4, 3, 2, 1, 0, 6, 7, 8, 9, 15, 14, 13, 12, 11, 10)

# PCKh groups of the MPII benchmark (joint indices). "Mean" covers the 14
# joints of the benchmark: all but pelvis and thorax.
PCKH_GROUPS = types.MappingProxyType({
    "Head": (8, 9),
    "Shoulder": (12, 13),
    "Elbow": (11, 14),
    "Wrist": (10, 15),
    "Hip": (2, 3),
    "Knee": (1, 4),
    "Ankle": (0, 5),
})
PCKH_MEAN_JOINTS: tuple[int, ...] = tuple(
    sorted(j for group in PCKH_GROUPS.values() for j in group))

# Contour points grouped by the PCKh group of their parent joint; the two
# neck points form their own group.
CONTOUR_PCKH_GROUPS = types.MappingProxyType({
    ("Neck" if group == "Head" else group):
        tuple(c for c, j in enumerate(CONTOUR_PARENT_JOINT) if j in joints)
    for group, joints in PCKH_GROUPS.items()
})

# Skeleton drawn for phosphenes (thesis): ankle-knee-hip per leg, hips joined
# to each other and to the pelvis, pelvis-thorax-upper_neck-head_top,
# shoulders joined to the neck directly, shoulder-elbow-wrist per arm.
SKELETON_EDGES: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 2), (5, 4), (4, 3),
    (2, 3), (2, 6), (3, 6),
    (6, 7), (7, 8), (8, 9),
    (12, 8), (13, 8),
    (12, 11), (11, 10), (13, 14), (14, 15),
)

# Limb segments from proximal to distal joint; each has a medial and a lateral
# side, given as (proximal contour point, distal contour point). The order is
# the drawing order used to decide which limb is in front (later = nearer).
LIMB_SEGMENTS = types.MappingProxyType({
    "right_thigh": dict(joints=(2, 1), medial=(4, 2), lateral=(5, 3)),
    "right_shin": dict(joints=(1, 0), medial=(2, 0), lateral=(3, 1)),
    "left_thigh": dict(joints=(3, 4), medial=(6, 8), lateral=(7, 9)),
    "left_shin": dict(joints=(4, 5), medial=(8, 10), lateral=(9, 11)),
    "right_upper_arm": dict(joints=(12, 11), medial=(18, 16), lateral=(19, 17)),
    "right_forearm": dict(joints=(11, 10), medial=(16, 14), lateral=(17, 15)),
    "left_upper_arm": dict(joints=(13, 14), medial=(20, 22), lateral=(21, 23)),
    "left_forearm": dict(joints=(14, 15), medial=(22, 24), lateral=(23, 25)),
})

# Contour edges: the medial and the lateral chain of every limb segment.
CONTOUR_LIMB_EDGES: tuple[tuple[int, int], ...] = tuple(
    edge for seg in LIMB_SEGMENTS.values() for edge in (seg["medial"], seg["lateral"]))
# Torso outline joining the limbs: neck to shoulder tops, armpits to hip
# sides, and the crotch.
CONTOUR_TORSO_EDGES: tuple[tuple[int, int], ...] = (
    (12, 19), (13, 21), (18, 5), (20, 7), (4, 6),
)
CONTOUR_EDGES: tuple[tuple[int, int], ...] = CONTOUR_LIMB_EDGES + CONTOUR_TORSO_EDGES

# The quadrilateral outline of every limb segment (medial proximal, medial
# distal, lateral distal, lateral proximal), in `LIMB_SEGMENTS` order.
LIMB_QUADS: tuple[tuple[int, int, int, int], ...] = tuple(
    (s["medial"][0], s["medial"][1], s["lateral"][1], s["lateral"][0])
    for s in LIMB_SEGMENTS.values())
# The torso: the region closed by `CONTOUR_TORSO_EDGES` and the tops of the
# limbs (neck base, shoulder tops, armpits, hip sides, crotch), in order
# around it.
TORSO_POLYGON: tuple[int, ...] = tuple(CONTOUR_INDEX[n] for n in (
    "right_neck", "lateral_right_shoulder", "medial_right_shoulder",
    "lateral_right_hip", "medial_right_hip", "medial_left_hip", "lateral_left_hip",
    "medial_left_shoulder", "lateral_left_shoulder", "left_neck"))

# MPII-TRB (COCO-style, 40 keypoints) spelling of our names. TRB calls the
# elbow "bow"; its 14 skeleton keypoints map onto MPII joints.
TRB_JOINT_NAMES = types.MappingProxyType({
    "right_ankle": 0, "right_knee": 1, "right_hip": 2, "left_hip": 3,
    "left_knee": 4, "left_ankle": 5, "neck": 8, "head": 9, "right_wrist": 10,
    "right_elbow": 11, "right_shoulder": 12, "left_shoulder": 13,
    "left_elbow": 14, "left_wrist": 15,
})
TRB_CONTOUR_NAMES = types.MappingProxyType({
    name.replace("elbow", "bow"): i for i, name in enumerate(CONTOUR_NAMES)})


@dataclasses.dataclass(frozen=True, eq=False)
class KeypointSet:
  """A set of keypoints: what a model head predicts and a batch carries.

  Instances are the module's singletons `JOINTS` and `CONTOUR`; they compare
  and hash by identity, so they can be static arguments of `jax.jit`.

  Attributes:
    name: the key of the set in batches, model outputs and predictions.
    names: keypoint names, in order.
    flip_permutation: new[i] = old[flip_permutation[i]] after a mirror in x.
    pckh_groups: PCKh group -> keypoint indices.
    pckh_mean: the keypoints pooled in PCKh `Mean`.
    edges: the lines drawn between keypoints (skeleton or contour).
  """
  name: str
  names: tuple[str, ...]
  flip_permutation: tuple[int, ...]
  pckh_groups: Mapping[str, tuple[int, ...]]
  pckh_mean: tuple[int, ...]
  edges: tuple[tuple[int, int], ...]

  @property
  def size(self) -> int:
    return len(self.names)

  @property
  def visible_key(self) -> str:
    """The batch key of the (K,) annotation mask, e.g. 'joints_visible'."""
    return f"{self.name}_visible"

  def flip(self, points, width: float):
    """Mirrors keypoints (..., K, 2) in x across an image `width` pixels wide.

    Integer coordinates are pixel centres, so x maps to width - 1 - x; the
    keypoints are permuted so that a left joint stays labelled left. Accepts
    numpy or jax arrays and returns the same kind.
    """
    flipped = points[..., np.asarray(self.flip_permutation), :]
    xp = np if isinstance(points, np.ndarray) else jnp
    return xp.stack([(width - 1) - flipped[..., 0], flipped[..., 1]], axis=-1)

  def __repr__(self) -> str:
    return f"KeypointSet({self.name!r}, {self.size} keypoints)"


JOINTS = KeypointSet("joints", JOINT_NAMES, JOINT_FLIP_PERMUTATION, PCKH_GROUPS,
                     PCKH_MEAN_JOINTS, SKELETON_EDGES)
CONTOUR = KeypointSet("contour", CONTOUR_NAMES, CONTOUR_FLIP_PERMUTATION,
                      CONTOUR_PCKH_GROUPS, tuple(range(NUM_CONTOUR)), CONTOUR_EDGES)
KEYPOINT_SETS = types.MappingProxyType({s.name: s for s in (JOINTS, CONTOUR)})


def get(name: str) -> KeypointSet:
  """The keypoint set called `name` ('joints' or 'contour').

  Raises:
    ValueError: for any other name.
  """
  try:
    return KEYPOINT_SETS[name]
  except KeyError:
    raise ValueError(f"unknown keypoint set {name!r}; known: "
                     f"{', '.join(KEYPOINT_SETS)}") from None
