"""PCKh on hand-made cases and on the real MPII validation annotations."""

import os
import pathlib

import numpy as np
import pytest

from triplet_pose import keypoints as kp
from triplet_pose import metrics


def _sample_dir() -> pathlib.Path:
  env = os.environ.get("TRIPLET_POSE_MPII_SAMPLE")
  if env:
    return pathlib.Path(env)
  return pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mpii_sample"


def _perfect(persons=3, k=kp.NUM_JOINTS, seed=0):
  rng = np.random.default_rng(seed)
  gt = np.round(rng.uniform(0, 200, size=(persons, k, 2)))  # exact offsets
  return gt.copy(), gt, np.ones((persons, k)), np.full(persons, 10.0)


def test_perfect_prediction_scores_one_per_group():
  pred, gt, vis, head = _perfect()
  result = metrics.pckh(pred, gt, vis, head)
  assert set(result) == set(kp.PCKH_GROUPS) | {"Mean"}
  assert all(v == 1.0 for v in result.values())


def test_exactly_at_threshold_counts_and_just_beyond_does_not():
  pred, gt, vis, head = _perfect(persons=1)
  pred[0, 0] += (3.0, 4.0)  # r_ankle 5 px off = 0.5 head sizes exactly
  assert metrics.pckh(pred, gt, vis, head, threshold=0.5)["Ankle"] == 1.0
  pred[0, 0] += (0.0, 0.01)
  result = metrics.pckh(pred, gt, vis, head, threshold=0.5)
  assert result["Ankle"] == 0.5  # r_ankle wrong, l_ankle right
  assert result["Mean"] == pytest.approx(13 / 14)


def test_invisible_keypoints_are_ignored():
  pred, gt, vis, head = _perfect(persons=2)
  pred[:, 12] += 1000.0  # r_shoulder far off...
  vis[:, 12] = 0  # ...but not annotated
  pred[:, 6] += 1000.0  # pelvis wrong: not part of Mean
  result = metrics.pckh(pred, gt, vis, head)
  assert result["Shoulder"] == 1.0 and result["Mean"] == 1.0
  per_kp, count = metrics.pckh_per_keypoint(pred, gt, vis, head)
  assert np.isnan(per_kp[12]) and count[12] == 0 and per_kp[6] == 0.0


def test_group_without_annotations_is_nan():
  pred, gt, vis, head = _perfect(persons=2)
  vis[:, [8, 9]] = 0
  result = metrics.pckh(pred, gt, vis, head)
  assert np.isnan(result["Head"]) and result["Mean"] == 1.0


def test_head_size_scaling():
  pred, gt, vis, head = _perfect(persons=2)
  pred = gt + np.array([6.0, 0.0])  # 6 px everywhere
  head = np.array([10.0, 20.0])  # 0.6 and 0.3 head sizes
  assert metrics.pckh(pred, gt, vis, head, threshold=0.5)["Mean"] == 0.5
  assert metrics.pckh(pred, gt, vis, head * 2, threshold=0.5)["Mean"] == 1.0
  assert metrics.pckh(pred, gt, vis, head, threshold=0.6)["Mean"] == 1.0


def test_mean_pools_annotations_and_groups_average_sides():
  pred, gt, vis, head = _perfect(persons=4)
  vis[1:, 10] = 0  # r_wrist annotated once...
  pred[0, 10] += 100  # ...and wrong
  result = metrics.pckh(pred, gt, vis, head)
  assert result["Wrist"] == pytest.approx(0.5)  # mean of r (0/1) and l (4/4)
  total = 14 * 4 - 3
  assert result["Mean"] == pytest.approx((total - 1) / total)


def test_contour_groups():
  pred, gt, vis, head = _perfect(persons=2, k=kp.NUM_CONTOUR)
  pred[:, kp.CONTOUR_INDEX["right_neck"]] += 100
  result = metrics.pckh(pred, gt, vis, head)
  assert set(result) == set(kp.CONTOUR_PCKH_GROUPS) | {"Mean"}
  assert result["Neck"] == 0.5 and result["Ankle"] == 1.0
  assert result["Mean"] == pytest.approx(25 / 26)


def test_bad_inputs_name_the_field():
  pred, gt, vis, head = _perfect()
  with pytest.raises(ValueError, match="head_size"):
    metrics.pckh(pred, gt, vis, np.zeros(3))
  with pytest.raises(ValueError, match="visible"):
    metrics.pckh(pred, gt, vis[:, :5], head)
  with pytest.raises(ValueError, match="keypoints"):
    metrics.pckh(pred[:, :5], gt[:, :5], vis[:, :5], head)


def test_curve_is_monotonic_and_auc():
  pred, gt, vis, head = _perfect(persons=50)
  rng = np.random.default_rng(1)
  pred = gt + rng.normal(0, 2, size=gt.shape)
  curve = metrics.pckh_curve(pred, gt, vis, head)
  assert np.all(np.diff(curve["Mean"]) >= 0)
  assert curve["Mean"][0] == 0.0 and curve["Mean"][-1] > 0.8
  assert metrics.auc([0, 1], [1, 1]) == 1.0
  assert metrics.auc([0, 0.5, 1], [0, 1, 1]) == pytest.approx(0.75)
  report = metrics.pckh_report(pred, gt, vis, head)
  assert report["Mean@0.1"] <= report["groups"]["Mean"]
  assert 0 < report["AUC"] < 1
  assert report["counts"]["r_ankle"] == 50


@pytest.fixture(scope="module")
def mpii_valid():
  path = _sample_dir() / "mpii_valid_annotations.h5"
  if not path.exists():
    pytest.skip(f"{path} not present")
  h5py = pytest.importorskip("h5py")
  with h5py.File(path, "r") as f:
    part = f["part"][:]
    normalize = f["normalize"][:]
  # The stacked-hourglass files mark unannotated joints by (0, 0); `visible`
  # there is the occlusion flag, and MPII counts occluded annotated joints.
  annotated = ~(part == 0).all(axis=-1)
  return part, annotated.astype(np.float32), normalize


def test_real_validation_ground_truth_scores_one(mpii_valid):
  part, annotated, head = mpii_valid
  assert part.shape == (2958, 16, 2)
  result = metrics.pckh(part, part, annotated, head)
  assert all(v == 1.0 for v in result.values())


def test_real_validation_shifted_by_0_4_head_sizes(mpii_valid):
  part, annotated, head = mpii_valid
  # Each keypoint moves 0.4 head sizes along its own random direction (a unit
  # vector, so the distance is 0.4 whatever the direction; shifting 0.4 in x
  # AND in y would move 0.57 head sizes).
  angle = np.random.default_rng(0).uniform(0, 2 * np.pi, size=part.shape[:2])
  direction = np.stack([np.cos(angle), np.sin(angle)], axis=-1)
  shifted = part + 0.4 * head[:, None, None] * direction
  at_05 = metrics.pckh(shifted, part, annotated, head, threshold=0.5)
  at_03 = metrics.pckh(shifted, part, annotated, head, threshold=0.3)
  assert all(v == 1.0 for v in at_05.values())
  assert all(v == 0.0 for v in at_03.values())
  curve = metrics.pckh_curve(shifted, part, annotated, head, thresholds=[0.39, 0.41])
  np.testing.assert_array_equal(curve["Mean"], [0.0, 1.0])


# --------------------------------------------------------------------------
# metrics.pckh (through the library's HDF5 reader) against an independent
# implementation of the MPII definition on the real validation annotations.

MPII_VALID_ANNOTATED_JOINTS = 44_240  # part != (0, 0) in mpii_valid_annotations.h5
# MPII's groups (0-based MPII joint order), written out here rather than
# taken from keypoints: Mean pools the 14 joints without pelvis (6) and thorax (7).
MPII_GROUPS = {"Head": (8, 9), "Shoulder": (12, 13), "Elbow": (11, 14), "Wrist": (10, 15),
               "Hip": (2, 3), "Knee": (1, 4), "Ankle": (0, 5)}


def _mpii_pckh_by_definition(path, offsets):
  """PCKh@0.5 from the MPII protocol, reading the HDF5 file directly.

  A joint counts when it is annotated (the stacked-hourglass files store an
  unannotated joint as (0, 0); their `visible` is the occlusion flag, and
  occluded annotated joints count). It is correct when its distance is at
  most 0.5 head sizes; the head size is 0.6 x the head-box diagonal, which
  these files store as `normalize`.
  """
  import h5py  # pylint: disable=g-import-not-at-top
  with h5py.File(path, "r") as f:
    part, head = f["part"][:], f["normalize"][:]
  annotated = ~np.all(part == 0, axis=-1)
  pred = part + offsets  # 1-based pixels; distances do not care.
  dist = np.sqrt(((pred - part) ** 2).sum(-1))
  correct = (dist <= 0.5 * head[:, None]) & annotated
  per_joint = correct.sum(0) / annotated.sum(0)
  result = {g: (per_joint[a] + per_joint[b]) / 2 for g, (a, b) in MPII_GROUPS.items()}
  joints = [j for pair in MPII_GROUPS.values() for j in pair]
  result["Mean"] = correct[:, joints].sum() / annotated[:, joints].sum()
  return result, int(annotated.sum())


def _mixed_offsets(head, shape, seed=0):
  """Seeded errors of every kind, in pixels: (persons, 16, 2).

  Per joint a distance in head sizes from a mixture (near 0, within 10% of
  the 0.5 threshold, beyond it, and gross misses) along a random direction,
  so a head size off by 10% or a different set of counted joints moves the
  score.
  """
  rng = np.random.default_rng(seed)
  kind = rng.choice(4, size=shape, p=[0.35, 0.3, 0.25, 0.1])
  lo = np.array([0.0, 0.45, 0.55, 2.0])[kind]
  hi = np.array([0.4, 0.55, 1.5, 10.0])[kind]
  distance = rng.uniform(lo, hi) * head[:, None]
  angle = rng.uniform(0, 2 * np.pi, size=shape)
  return np.stack([np.cos(angle), np.sin(angle)], -1) * distance[..., None]


def test_pckh_matches_the_mpii_definition_on_real_validation(mpii_sample):
  from triplet_pose.data.mpii_trb import annotations  # pylint: disable=g-import-not-at-top
  path = mpii_sample / "mpii_valid_annotations.h5"
  people = annotations.read_hdf5(path, split="validation")
  joints = np.stack([p.joints for p in people])
  visible = np.stack([p.joints_visible for p in people])
  head = np.array([p.head_size for p in people])
  assert joints.shape == (2958, 16, 2)
  offsets = _mixed_offsets(head, joints.shape[:2])

  expected, annotated = _mpii_pckh_by_definition(path, offsets)
  assert annotated == MPII_VALID_ANNOTATED_JOINTS
  _, count = metrics.pckh_per_keypoint(joints + offsets, joints, visible, head)
  assert int(count.sum()) == MPII_VALID_ANNOTATED_JOINTS
  got = metrics.pckh(joints + offsets, joints, visible, head)
  assert got == pytest.approx(expected, abs=1e-12)
  assert 0.45 < got["Mean"] < 0.55  # 0.35 + 0.3 / 2 expected: room to move both ways.
