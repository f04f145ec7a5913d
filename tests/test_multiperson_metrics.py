"""Multi-person AP (MPII protocol) on hand-computed cases."""

import numpy as np
import pytest

from triplet_pose import metrics


def _gt(*persons, head=10.0, visible=None):
  keypoints = np.asarray(persons, np.float64)
  vis = np.ones(keypoints.shape[:2], bool) if visible is None else np.asarray(visible, bool)
  return keypoints, vis, np.full(len(persons), head)


def _pred(*persons):
  if not persons:
    return np.zeros((0, 0, 3))
  return np.asarray(persons, np.float64).reshape(len(persons), -1, 3)


def test_two_people_and_a_duplicate_by_hand():
  gt = _gt([(0, 0), (10, 0)], [(100, 0), (110, 0)])
  pred = _pred([(1, 0, .9), (10, 1, .8)],       # takes person 0, both joints right
               [(100, 0, .7), (130, 0, .6)],    # takes person 1, joint 1 is 20 px off
               [(0, 1, .5), (11, 0, .5)])       # person 0 is taken: unmatched
  result = metrics.multi_person_ap([pred], [gt])
  # Joint 0: TP .9, TP .7, FP .5 -> recall 1 at precision 1: AP 100.
  # Joint 1: TP .8, FP .6, FP .5 -> recall 1/2 at precision 1: AP 50.
  np.testing.assert_allclose(result["ap"], [100.0, 50.0])
  assert result["map"] == pytest.approx(75.0)


def test_voc_all_points_uses_the_precision_envelope():
  # Scores .9 FP, .8 TP, .7 TP, .6 FP, .5 TP of 4 positives: recall steps
  # .25, .5, .75 at envelope precisions 2/3, 2/3, 3/5.
  expected = 0.25 * 2 / 3 + 0.25 * 2 / 3 + 0.25 * 0.6
  recall = np.array([0, 1, 2, 2, 3]) / 4
  precision = np.array([0, 1, 2, 2, 3]) / np.arange(1, 6)
  assert metrics.voc_ap(recall, precision) == pytest.approx(expected)
  gts, preds = [], []
  for hit, score in ((False, .9), (True, .8), (True, .7), (False, .6), (True, .5)):
    gts.append(_gt([(0, 0)], visible=[[hit]]))  # a miss's image has no positive
    preds.append(_pred([(0 if hit else 50, 0, score)]))
  gts.append(_gt([(0, 0)]))  # a fourth positive nobody finds
  preds.append(_pred())
  assert metrics.multi_person_ap(preds, gts)["ap"][0] == pytest.approx(100 * expected)


def test_higher_mean_score_matches_first_and_ties_go_by_index():
  gt = _gt([(0, 0), (10, 0)])
  # Prediction 1 fits better (2 joints) but prediction 0 has the higher mean
  # score: 0 takes the person, so 1's right joints are false positives.
  pred = _pred([(0, 0, .9), (40, 0, .9)], [(0, 0, .5), (10, 0, .5)])
  np.testing.assert_allclose(metrics.multi_person_ap([pred], [gt])["ap"], [100.0, 0.0])
  # Equal mean scores: the lower index goes first.
  pred = _pred([(0, 0, .6), (40, 0, .4)], [(0, 0, .5), (10, 0, .5)])
  ap = metrics.multi_person_ap([pred], [gt])["ap"]
  # Joint 0: TP .6, FP .5; joint 1: FP .5 (person 1, unmatched), FP .4.
  np.testing.assert_allclose(ap, [100.0, 0.0])
  # Prediction 0 matches both persons by one joint: it takes the lower index,
  # and prediction 1 gets person 1 (joint 1: FP .9, TP .5 of 2 positives).
  two = _gt([(0, 0), (10, 0)], [(0, 0), (50, 0)])
  pred = _pred([(0, 0, .9), (30, 0, .9)], [(0, 0, .5), (50, 0, .5)])
  np.testing.assert_allclose(metrics.multi_person_ap([pred], [two])["ap"], [100.0, 25.0])


def test_a_taken_person_is_not_taken_again():
  gt = _gt([(0, 0), (10, 0)], [(500, 0), (510, 0)])  # nobody finds person 1
  pred = _pred([(0, 0, .9), (10, 0, .9)], [(0, 0, .8), (10, 0, .8)])
  # The second is a duplicate of person 0: false positives, not true ones.
  np.testing.assert_allclose(metrics.multi_person_ap([pred], [gt])["ap"], [50.0, 50.0])


def test_invisible_joints_are_not_positives_and_thresholds_hold():
  gt = _gt([(0, 0), (10, 0)], visible=[[True, False]])
  # Joint 1 is on the invisible ground truth: a false positive, no positives.
  pred = _pred([(3, 4, .9), (10, 0, .9)])  # joint 0 exactly 0.5 head sizes away
  result = metrics.multi_person_ap([pred], [gt])
  assert result["ap"][0] == 100.0 and np.isnan(result["ap"][1])
  assert result["map"] == 100.0
  pred = _pred([(3, 4.01, .9), (10, 0, .9)])  # just beyond: no match at all
  assert metrics.multi_person_ap([pred], [gt])["ap"][0] == 0.0
  assert metrics.multi_person_ap([pred], [gt], threshold=1.0)["ap"][0] == 100.0


def test_non_finite_joints_are_not_detections_and_empty_images_count():
  gt = _gt([(0, 0), (10, 0)])
  pred = _pred([(0, 0, .9), (np.nan, np.nan, np.nan)])
  ap = metrics.multi_person_ap([pred, np.zeros((0, 2, 3))], [gt, gt])["ap"]
  # Joint 0: one TP of 2 positives (the second image has no prediction).
  np.testing.assert_allclose(ap, [50.0, 0.0])


def test_person_mask_scores_a_bin_and_ignores_the_rest():
  gt = _gt([(0, 0), (10, 0)], [(100, 0), (110, 0)])
  pred = _pred([(0, 0, .9), (10, 0, .9)],          # person 0, right
               [(100, 0, .8), (140, 0, .8)],       # person 1, joint 1 wrong
               [(300, 0, .95), (300, 0, .95)])     # nobody: ignored in a bin
  first = metrics.multi_person_ap([pred], [gt], person_mask=[[True, False]])
  np.testing.assert_allclose(first["ap"], [100.0, 100.0])
  second = metrics.multi_person_ap([pred], [gt], person_mask=[[False, True]])
  np.testing.assert_allclose(second["ap"], [100.0, 0.0])
  everyone = metrics.multi_person_ap([pred], [gt])
  # Joint 0: FP .95, TP .9, TP .8 -> envelope 2/3 over all recall.
  assert everyone["ap"][0] == pytest.approx(100 * 2 / 3)


def test_person_mask_with_an_image_of_nobody():
  # An image with no ground-truth person and one prediction: the prediction
  # takes no scored person, so a bin leaves it out.
  nobody = (np.zeros((0, 2, 2)), np.zeros((0, 2), bool), np.zeros(0))
  gt = _gt([(0, 0), (10, 0)])
  preds = [_pred([(0, 0, .9), (10, 0, .9)]), _pred([(50, 0, .95), (60, 0, .95)])]
  result = metrics.multi_person_ap(preds, [gt, nobody], person_mask=[[True], []])
  np.testing.assert_allclose(result["ap"], [100.0, 100.0])
  everyone = metrics.multi_person_ap(preds, [gt, nobody])
  assert everyone["ap"][0] < 100.0


def test_sixteen_joints_average_the_fourteen_of_the_benchmark():
  keypoints = np.arange(32, dtype=float).reshape(1, 16, 2) * 20
  gt = (keypoints, np.ones((1, 16), bool), np.array([10.0]))
  pred = np.concatenate([keypoints, np.ones((1, 16, 1))], -1)
  pred[0, 6:8, :2] += 100  # pelvis and thorax wrong: not in the mean
  result = metrics.multi_person_ap([pred], [gt])
  assert result["ap"][6] == 0.0 and result["map"] == 100.0


def test_bad_input_names_the_image():
  gt = _gt([(0, 0), (10, 0)])
  with pytest.raises(ValueError, match="image 1"):
    metrics.multi_person_ap([_pred([(0, 0, 1), (0, 0, 1)]), np.zeros((1, 3, 3))], [gt, gt])
  with pytest.raises(ValueError, match="2 images of predictions but 1"):
    metrics.multi_person_ap([_pred(), _pred()], [gt])
  with pytest.raises(ValueError, match="head size"):
    metrics.multi_person_ap([_pred()], [(gt[0], gt[1], np.zeros(1))])


def test_person_count_accuracy():
  assert metrics.person_count_accuracy([1, 2, 3, 0], [1, 2, 4, 0]) == 0.75
