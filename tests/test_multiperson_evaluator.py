"""The multi-person evaluator on scene batches: exact predictions score 100,
bins and counts follow the batch, and the single-person baseline maps crops back."""

import numpy as np
import pytest

from triplet_pose import top_down
from triplet_pose.data import scene_features as sf
from triplet_pose.evaluators import multi_person


def _batch():
  rng = np.random.default_rng(0)
  joints = rng.uniform(20, 100, (2, 3, 16, 2)).astype(np.float32)
  joints[0, 1] += 200  # far apart from person 0
  occlusion = np.zeros((2, 3, 16), np.int32)
  occlusion[0, 1, :8] = sf.HIDDEN_BY_PERSON  # half hidden: 'heavily'
  valid_persons = np.array([[True, True, False], [True, False, False]])
  affine = np.array([[2.0, 0, 10], [0, 2.0, 5]], np.float32)  # crop -> original
  return {"image": np.zeros((2, 320, 320, 3), np.uint8), "joints": joints,
          "joints_visible": np.ones((2, 3, 16), np.float32), "joints_occlusion": occlusion,
          "head_size": np.full((2, 3), 10.0, np.float32), "persons_valid": valid_persons,
          "num_persons": np.array([2, 1]), "crowd_index": np.array([0.0, 0.5], np.float32),
          "crop_to_original": np.stack([affine, affine]), "valid": np.array([True, True]),
          "boxes": np.concatenate([joints.min(2), joints.max(2)], -1)}


def _exact(batch):
  return [np.concatenate([batch["joints"][i][batch["persons_valid"][i]],
                          np.ones((batch["persons_valid"][i].sum(), 16, 1))], -1)
          for i in range(2)]


def test_exact_predictions_and_a_missed_person():
  batch = _batch()
  metric = multi_person.MultiPersonAp()
  metric.update(batch, {"persons": _exact(batch), "ceiling": _exact(batch)})
  r = metric.report()
  assert r["map"] == 100.0 and r["count_accuracy"] == 1.0 and r["ceiling_map"] == 100.0
  assert r["images"] == 2 and r["persons"] == 3
  assert set(r["by_occlusion"]) == {"unoccluded", "heavily"} and set(r["by_crowd"]) == {
      "easy", "medium"}
  missed = _exact(batch)
  missed[0] = missed[0][:1]  # the half-hidden person is not found
  metric = multi_person.MultiPersonAp()
  metric.update(batch, {"persons": missed})
  r = metric.report()
  assert r["count_accuracy"] == 0.5
  assert r["by_occlusion"]["heavily"] == 0.0 and r["by_occlusion"]["unoccluded"] == 100.0
  assert r["by_crowd"]["medium"] == 100.0 and r["by_crowd"]["easy"] < 100.0
  # Head sizes scale with the crop (x2): 4 crop pixels off is 0.4 head
  # sizes (right), 6 is 0.6 (wrong).
  for shift, expected in ((4.0, 100.0), (6.0, 0.0)):
    shifted = _exact(batch)
    shifted[1] = shifted[1] + np.array([shift, 0, 0])
    metric = multi_person.MultiPersonAp()
    metric.update(batch, {"persons": shifted})
    assert metric.report()["by_crowd"]["medium"] == expected


def test_single_person_baseline_maps_each_box_crop_back():
  batch = _batch()
  expected = []  # what an exact joint model would answer, crop by crop
  for i in range(2):
    real = batch["persons_valid"][i]
    boxes = batch["boxes"][i][real].reshape(-1, 2, 2)
    _, affines = top_down.person_crops(batch["image"][i], boxes, size=64)
    expected.append(top_down.transforms.apply_affine(affines, batch["joints"][i][real]))

  def joint_fn(variables, crops):
    joints = expected.pop(0)
    assert variables == "v" and crops.shape == (len(joints), 64, 64, 3)
    return {"keypoints": {"joints": joints}, "confidence": {"joints": np.ones(joints.shape[:2])}}

  report = multi_person.single_person_baseline(joint_fn, "v", [batch], size=64)
  assert report["map"] == pytest.approx(100.0) and report["count_accuracy"] == 1.0
