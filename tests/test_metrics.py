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
