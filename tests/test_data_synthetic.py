"""Tests of the synthetic figures: exact geometry, determinism, the TFDS builder."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from triplet_pose import keypoints as kp
from triplet_pose.data.synthetic_figures import figures
from triplet_pose.data.synthetic_figures import synthetic_figures_dataset_builder as sfb

J = kp.JOINT_INDEX
C = kp.CONTOUR_INDEX


def _standing_pose():
  """A front-facing person standing straight, arms hanging (body units, y down)."""
  j = np.zeros((kp.NUM_JOINTS, 2))
  j[J["pelvis"]], j[J["thorax"]] = (0, 0), (0, -1)
  j[J["upper_neck"]], j[J["head_top"]] = (0, -1.25), (0, -1.8)
  for side, x in (("r", -1.0), ("l", 1.0)):  # the person's right is on screen left
    j[J[f"{side}_hip"]] = (0.2 * x, 0)
    j[J[f"{side}_knee"]], j[J[f"{side}_ankle"]] = (0.2 * x, 0.9), (0.2 * x, 1.8)
    j[J[f"{side}_shoulder"]] = (0.35 * x, -0.95)
    j[J[f"{side}_elbow"]], j[J[f"{side}_wrist"]] = (0.4 * x, -0.35), (0.4 * x, 0.2)
  widths = np.full(kp.NUM_JOINTS, 0.2)
  return j, widths


def test_contour_points_are_medial_and_lateral_at_half_width():
  joints, widths = _standing_pose()
  contour = figures.contour_points(joints, widths, neck_width=0.3)
  for c, parent in enumerate(kp.CONTOUR_PARENT_JOINT):
    expected = 0.15 if parent == J["upper_neck"] else 0.1
    assert np.linalg.norm(contour[c] - joints[parent]) == pytest.approx(expected)
  # Medial faces the body's midline (x = 0), lateral faces away.
  for name in ("right_ankle", "right_knee", "right_hip", "right_shoulder", "right_elbow",
               "left_ankle", "left_knee", "left_hip", "left_shoulder", "left_elbow", "left_wrist"):
    assert abs(contour[C[f"medial_{name}"], 0]) < abs(contour[C[f"lateral_{name}"], 0]), name
  assert contour[C["right_neck"], 0] < 0 < contour[C["left_neck"], 0]


def test_contour_points_turn_with_the_limb():
  joints, widths = _standing_pose()
  # Right arm raised sideways to horizontal: its medial side (armpit) faces down.
  joints[J["r_elbow"]] = joints[J["r_shoulder"]] + (-0.6, 0)
  joints[J["r_wrist"]] = joints[J["r_elbow"]] + (-0.55, 0)
  contour = figures.contour_points(joints, widths, neck_width=0.3)
  assert contour[C["medial_right_elbow"], 1] > joints[J["r_elbow"], 1]
  assert contour[C["lateral_right_elbow"], 1] < joints[J["r_elbow"], 1]
  # A bent knee: the outline point lies on the bisector, still at half width.
  joints[J["r_ankle"]] = joints[J["r_knee"]] + (0.9, 0)
  contour = figures.contour_points(joints, widths, neck_width=0.3)
  knee = joints[J["r_knee"]]
  np.testing.assert_allclose(np.linalg.norm(contour[C["medial_right_knee"]] - knee), 0.1)
  direction = contour[C["lateral_right_knee"]] - joints[J["r_knee"]]
  np.testing.assert_allclose(direction / np.linalg.norm(direction), [-np.sqrt(0.5), np.sqrt(0.5)])


def test_examples_are_deterministic_and_complete():
  a, b = figures.make_example(3, 5), figures.make_example(3, 5)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])
  c = figures.make_example(3, 6)
  assert not np.array_equal(a["image"], c["image"])
  other_stream = figures.make_example(3, 5, stream=1)
  assert not np.array_equal(a["joints"], other_stream["joints"])
  for ex in (a, c):
    assert ex["image"].shape == (256, 256, 3) and ex["image"].dtype == np.uint8
    assert ex["joints_visible"].all() and ex["contour_visible"].all()
    points = np.concatenate([ex["joints"], ex["contour"]])
    assert points.min() >= 0 and points.max() <= 255


def test_clutter_knob_keeps_the_figure():
  full, plain = figures.make_example(0, 2), figures.make_example(0, 2, clutter=0.0)
  np.testing.assert_array_equal(full["joints"], plain["joints"])
  assert not np.array_equal(full["image"], plain["image"])


def test_figures_are_large_varied_and_drawn_where_the_keypoints_are():
  spans, angles = [], []
  for i in range(24):
    ex = figures.make_example(0, i)
    j = ex["joints"]
    spans.append(np.ptp(np.concatenate([j, ex["contour"]]), axis=0).max())
    d = j[J["r_elbow"]] - j[J["r_shoulder"]]
    angles.append(np.arctan2(d[1], d[0]))
    # The head is drawn: head top and upper neck are at least head_size apart.
    assert np.linalg.norm(j[J["head_top"]] - j[J["upper_neck"]]) * 0.75 == pytest.approx(
        ex["head_size"], rel=1e-5)
    assert ex["head_size"] > 8
  assert np.mean(spans) > 150  # the person fills most of the crop
  assert np.std(angles) > 0.5  # poses vary


def test_builder_small_config_builds_deterministically(tmp_path):
  config = sfb.SyntheticFiguresConfig(name="test6", num_train=6, num_validation=3, seed=7)
  builders = []
  for run in ("a", "b"):
    builder = sfb.Builder(config=config, data_dir=str(tmp_path / run))
    builder.download_and_prepare()
    builders.append(builder)
  assert builders[0].info.splits["train"].num_examples == 6
  assert builders[0].info.splits["validation"].num_examples == 3
  sources = [b.as_data_source("train") for b in builders]
  names = sorted(sources[0][i]["image_name"] for i in range(6))
  assert names == sorted(f"synthetic_7_0_{i:06d}".encode() for i in range(6))
  for i in range(6):
    x, y = sources[0][i], sources[1][i]
    np.testing.assert_array_equal(x["image"], y["image"])
    np.testing.assert_array_equal(x["contour"], y["contour"])
    expected = figures.make_example(7, int(x["image_name"][-6:]))
    np.testing.assert_allclose(x["joints"], expected["joints"])
    # JPEG keeps the picture (it drops some of the pixel noise).
    assert np.abs(x["image"].astype(int) - expected["image"]).mean() < 8
    unrelated = figures.make_example(7, int(x["image_name"][-6:]) + 100)["image"]
    assert np.abs(x["image"].astype(int) - unrelated).mean() > 20


def test_process_pool_gives_the_same_examples(monkeypatch):
  monkeypatch.setattr(sfb, "MIN_EXAMPLES_FOR_POOL", 0)
  config = sfb.SyntheticFiguresConfig(name="pool", num_train=4, num_validation=2, num_workers=2)
  builder = sfb.Builder(config=config, data_dir="/nonexistent-not-written")
  pooled = dict(builder._generate_examples("validation", 2))  # pylint: disable=protected-access
  for index, example in pooled.items():
    _, direct = figures.encoded_example((0, 1, index))
    assert example["image"] == direct["image"]


def test_registered_configs():
  assert {c.name for c in sfb.Builder.BUILDER_CONFIGS} == {"default", "easy", "small", "tiny"}
  default = tfds.builder("synthetic_figures", data_dir="/nonexistent-not-written").builder_config
  assert default.num_train >= 2000 and default.num_validation >= 200
