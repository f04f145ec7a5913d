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
  assert r["images"] == 2 and r["persons"] == 3 and r["persons_left_out"] == 0
  assert set(r["by_occlusion"]) == {"unoccluded", "heavily"} and set(r["by_crowd"]) == {
      "easy", "medium"}
  missed = _exact(batch)
  missed[0] = missed[0][:1]  # the half-hidden person is not found
  metric = multi_person.MultiPersonAp()
  metric.update(batch, {"persons": missed})
  r = metric.report()
  assert r["count_accuracy"] == 0.5 and r["count_too_few"] == 0.5 and r["count_too_many"] == 0.0
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


def test_persons_past_max_persons_are_counted_and_named():
  batch = _batch()
  batch["num_persons"] = np.array([3, 1])  # image 0 had a third person, cut by the pipeline
  metric = multi_person.MultiPersonAp()
  metric.update(batch, {"persons": _exact(batch)})
  r = metric.report()
  assert r["persons_left_out"] == 1 and r["count_too_few"] == 0.5


def test_persons_of_unknown_occlusion_fall_in_no_occlusion_bin():
  batch = _batch()
  batch["joints_occlusion"][:] = sf.UNKNOWN  # as MPII's multi-person config stores it
  metric = multi_person.MultiPersonAp()
  metric.update(batch, {"persons": _exact(batch)})
  r = metric.report()
  assert r["map"] == 100.0 and r["by_occlusion"] == {}
  assert "map_unoccluded" not in metric.result()


def test_bootstrap_intervals_are_points_for_alike_images_and_spread_for_unlike_ones():
  batch = _batch()
  alike = multi_person.MultiPersonAp()
  for _ in range(5):
    alike.update(batch, {"persons": _exact(batch), "ceiling": _exact(batch)})
  spans = alike.intervals(resamples=50)
  assert spans["map"] == [100.0, 100.0] and spans["count_accuracy"] == [1.0, 1.0]
  assert spans["ceiling_map"] == [100.0, 100.0] and spans["resamples"] == 50
  assert set(spans["by_occlusion"]) == {"unoccluded", "heavily"}
  # Image 0 misses its half-hidden person, image 1 is exact: count 0.5.
  missed = _exact(batch)
  missed[0] = missed[0][:1]
  unlike = multi_person.MultiPersonAp()
  for _ in range(10):
    unlike.update(batch, {"persons": missed})
  report, spans = unlike.report(), unlike.intervals(resamples=200, level=0.9)
  low, high = spans["count_accuracy"]
  assert 0.0 <= low < report["count_accuracy"] == 0.5 < high <= 1.0
  assert spans["map"][0] < report["map"] < spans["map"][1]
  assert spans["by_occlusion"]["heavily"] == [0.0, 0.0]  # missed in every image
  assert "ceiling_map" not in spans
  assert unlike.intervals(resamples=200, level=0.9) == spans  # seeded
  assert unlike.intervals(resamples=200, level=0.9, seed=1) != spans
  for bad in ({"resamples": 1}, {"level": 1.0}):
    with pytest.raises(ValueError, match="resamples must be at least 2"):
      unlike.intervals(**bad)


def test_single_person_baseline_maps_each_box_crop_back():
  batch = _batch()
  expected = []  # what an exact joint model would answer, crop by crop
  for i in range(2):
    real = batch["persons_valid"][i]
    _, affines = top_down.box_crops(batch["image"][i], batch["boxes"][i][real], size=64)
    expected.append(top_down.transforms.apply_affine(affines, batch["joints"][i][real]))

  def joint_fn(variables, crops):
    joints = expected.pop(0)
    assert variables == "v" and crops.shape == (len(joints), 64, 64, 3)
    return {"keypoints": {"joints": joints}, "confidence": {"joints": np.ones(joints.shape[:2])}}

  report = multi_person.single_person_baseline(joint_fn, "v", [batch], size=64)
  assert report["map"] == pytest.approx(100.0) and report["count_accuracy"] == 1.0


def test_box_crops_frame_each_box_as_the_single_person_model_was_trained():
  image = np.zeros((128, 128, 3), np.uint8)
  image[:, :64] = 200  # the left half bright: the surroundings stay in the crop
  box = np.array([[40.0, 20.0, 79.0, 99.0]])  # 40 x 80 px, centre (59.5, 59.5)
  crops, affines = top_down.box_crops(image, box, size=64)
  corners = top_down.transforms.apply_affine(affines[0], box.reshape(2, 2))
  # The longer side takes PERSON_FILL (0.8) of the crop's, centred.
  assert corners[1, 1] - corners[0, 1] == pytest.approx(0.8 * 64 * 79 / 80, abs=0.01)
  assert (corners[0] + corners[1]) / 2 == pytest.approx([31.5, 31.5], abs=0.01)
  # The crop spans 100 image pixels around the centre: image columns 9.5-109.5.
  assert crops[0, 32, 2].mean() == 200 and crops[0, 32, 60].mean() == 0
  # Beyond the image is black: the crop of a box at the image's corner
  # reaches past its top-left edge.
  corner, _ = top_down.box_crops(image, np.array([[0.0, 0.0, 9.0, 9.0]]), size=64)
  assert corner[0, 2, 2].mean() == 0 and corner[0, 40, 40].mean() == 200
  with pytest.raises(ValueError, match="fill must be in"):
    top_down.box_crops(image, box, size=64, fill=1.5)
