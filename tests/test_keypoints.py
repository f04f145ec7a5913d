"""Keypoint conventions: flips, groups, edges and the TRB name maps."""

import json

import numpy as np
import pytest

from triplet_pose import keypoints as kp


@pytest.mark.parametrize("kind,names", [("joints", kp.JOINT_NAMES),
                                        ("contour", kp.CONTOUR_NAMES)])
def test_flip_permutation_is_an_involution_that_swaps_sides(kind, names):
  perm = kp.get(kind).flip_permutation
  assert sorted(perm) == list(range(len(names)))
  assert [perm[p] for p in perm] == list(range(len(names)))
  for i, j in enumerate(perm):
    a, b = names[i], names[j]
    # Right and left swap; medial/lateral and the joint type never change.
    assert a.replace("right", "").replace("left", "").lstrip("rl_") == \
        b.replace("right", "").replace("left", "").lstrip("rl_")
    if "right" in a or "left" in a or a[:2] in ("r_", "l_"):
      assert i != j
    else:
      assert i == j


def test_joint_flip_matches_mpii():
  assert kp.JOINT_FLIP_PERMUTATION == (5, 4, 3, 2, 1, 0, 6, 7, 8, 9, 15, 14, 13, 12, 11, 10)


def test_flip_keypoints_twice_is_identity_and_mirrors_x():
  rng = np.random.default_rng(0)
  pts = rng.uniform(0, 255, size=(3, kp.NUM_CONTOUR, 2))
  once = kp.CONTOUR.flip(pts, 256)
  np.testing.assert_allclose(kp.CONTOUR.flip(once, 256), pts)
  perm = np.asarray(kp.CONTOUR_FLIP_PERMUTATION)
  np.testing.assert_allclose(once[..., 0], 255 - pts[:, perm, 0])
  np.testing.assert_allclose(once[..., 1], pts[:, perm, 1])


def test_pckh_groups_cover_the_14_benchmark_joints():
  assert len(kp.PCKH_MEAN_JOINTS) == 14
  assert kp.JOINT_INDEX["pelvis"] not in kp.PCKH_MEAN_JOINTS
  assert kp.JOINT_INDEX["thorax"] not in kp.PCKH_MEAN_JOINTS
  contour = sorted(c for g in kp.CONTOUR_PCKH_GROUPS.values() for c in g)
  assert contour == list(range(kp.NUM_CONTOUR))


def test_contour_parents_follow_names():
  for c, j in enumerate(kp.CONTOUR_PARENT_JOINT):
    joint = kp.JOINT_NAMES[j]
    joint = {"r_": "right_", "l_": "left_"}.get(joint[:2], joint[:2]) + joint[2:]
    if "neck" in kp.CONTOUR_NAMES[c]:
      assert joint == "upper_neck"
    else:
      assert kp.CONTOUR_NAMES[c].endswith(joint)


def test_edges_are_valid_and_limb_chains_stay_on_one_side():
  for a, b in kp.SKELETON_EDGES:
    assert 0 <= a < kp.NUM_JOINTS and 0 <= b < kp.NUM_JOINTS and a != b
  for a, b in kp.CONTOUR_LIMB_EDGES:
    side = lambda n: n.split("_")[0]
    assert side(kp.CONTOUR_NAMES[a]) == side(kp.CONTOUR_NAMES[b])
  for seg in kp.LIMB_SEGMENTS.values():
    ja, jb = seg["joints"]
    for side in ("medial", "lateral"):
      ca, cb = seg[side]
      assert (kp.CONTOUR_PARENT_JOINT[ca], kp.CONTOUR_PARENT_JOINT[cb]) == (ja, jb)


def test_trb_names_cover_the_real_trb_file(mpii_sample):
  trb = json.loads((mpii_sample / "mpii_trb_annotations.json").read_text())
  names = trb["categories"][0]["keypoints"]
  mapped = set(kp.TRB_JOINT_NAMES) | set(kp.TRB_CONTOUR_NAMES)
  assert set(names) == mapped
  assert len(kp.TRB_CONTOUR_NAMES) == kp.NUM_CONTOUR


def _mirror_name(name):
  """The name of the keypoint on the other side: right <-> left, r_ <-> l_."""
  swapped = name.replace("right", "\0").replace("left", "right").replace("\0", "left")
  return {"r_": "l_", "l_": "r_"}.get(swapped[:2], swapped[:2]) + swapped[2:]


@pytest.mark.parametrize("names,perm", [(kp.JOINT_NAMES, kp.JOINT_FLIP_PERMUTATION),
                                        (kp.CONTOUR_NAMES, kp.CONTOUR_FLIP_PERMUTATION)])
def test_flip_permutation_is_the_mirror_of_each_name(names, perm):
  expected = tuple(names.index(_mirror_name(n)) for n in names)
  assert tuple(perm) == expected
  sided = sum(n != _mirror_name(n) for n in names)
  assert sided == (12 if len(names) == kp.NUM_JOINTS else 26)  # Not an identity.
  assert _mirror_name("r_wrist") == "l_wrist"
  assert _mirror_name("medial_left_elbow") == "medial_right_elbow"
