"""The `synthetic_scenes` dataset: exact visibility, masks, crowd index, batches."""

import numpy as np
import pytest

from triplet_pose.data import scene_features as sf
from triplet_pose.data import scene_pipeline
from triplet_pose.data.synthetic_scenes import scenes
from triplet_pose.data.synthetic_scenes import synthetic_scenes_dataset_builder as ssb


@pytest.fixture(scope="module")
def some_scenes():
  return [scenes.make_scene(3, i) for i in range(12)]


def test_scenes_are_deterministic_and_vary():
  a, b, c = scenes.make_scene(0, 5), scenes.make_scene(0, 5), scenes.make_scene(0, 6)
  np.testing.assert_array_equal(a["image"], b["image"])
  np.testing.assert_array_equal(a["joints"], b["joints"])
  assert not np.array_equal(a["image"], c["image"])


def test_visibility_reasons_agree_with_the_instance_masks(some_scenes):
  counts = np.zeros(4, int)
  for scene in some_scenes:
    instance, amodal = scene["instance_map"][..., 0], scene["amodal_map"][..., 0]
    p = len(scene["joints"])
    assert 1 <= p <= 4 and np.array_equal(scene["depth"], np.arange(p))
    for i in range(p):
      for (x, y), code, annotated in zip(scene["joints"][i], scene["joints_occlusion"][i],
                                         scene["joints_visible"][i]):
        counts[code] += 1
        assert annotated == (code != sf.OUT_OF_FRAME)
        if code == sf.OUT_OF_FRAME:
          continue
        yi, xi = int(round(y)), int(round(x))
        label = instance[yi, xi]
        # Joints such as the head top lie on the outline: look one pixel around.
        around = (slice(max(yi - 1, 0), yi + 2), slice(max(xi - 1, 0), xi + 2))
        assert (amodal[around] & (1 << i)).any()  # its own body is there
        if code == sf.VISIBLE:
          assert (instance[around] == i + 1).any() and not 1 <= label <= i
        elif code == sf.HIDDEN_BY_PERSON:
          assert 1 <= label <= i  # a nearer person (lower index) is seen there
        else:
          assert label == 0  # an occluder
      assert (scene["joints_occlusion"][i] == sf.VISIBLE).sum() >= scenes.MIN_VISIBLE_JOINTS
      x0, y0, x1, y1 = scene["boxes"][i]
      ys, xs = np.nonzero(amodal & (1 << i))
      assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max(), ys.max())
  # The sample holds every kind of visibility.
  assert counts[sf.VISIBLE] > 0 and counts[sf.HIDDEN_BY_PERSON] > 0
  assert counts[sf.HIDDEN_BY_OCCLUDER] > 0


def test_nearer_figures_are_drawn_over_farther_ones(some_scenes):
  # Where two figures overlap, the image shows the nearer one's pixels: its
  # label, in the instance map, wins over the farther one's body.
  overlaps = 0
  for scene in some_scenes:
    amodal = scene["amodal_map"][..., 0]
    instance = scene["instance_map"][..., 0]
    both = (amodal & 1).astype(bool) & (amodal & 2).astype(bool)
    overlaps += both.sum()
    assert not np.any(both & (instance == 2))
  assert overlaps > 0


def test_crowd_index_by_hand():
  keypoints = np.array([[[0, 0], [10, 10]], [[5, 5], [50, 50]]], float)
  visible = np.ones((2, 2))
  boxes = sf.keypoint_boxes(keypoints, visible)
  np.testing.assert_array_equal(boxes, [[0, 0, 10, 10], [5, 5, 50, 50]])
  # Person 0's box holds one of person 1's two joints, person 1's box one of
  # person 0's: (1/2 + 1/2) / 2.
  assert sf.crowd_index(keypoints, visible, boxes) == 0.5
  assert sf.crowd_index(keypoints[:1], visible[:1], boxes[:1]) == 0.0
  np.testing.assert_array_equal(sf.crowd_bin([0.0, 0.1, 0.11, 0.8, 0.81, 2.0]),
                                [0, 0, 1, 1, 2, 2])


def test_occlusion_fraction_and_bins():
  occlusion = np.array([[0, 0, 2, 1], [3, 2, 0, 0], [0, 0, 0, 0]])
  visible = (occlusion != sf.OUT_OF_FRAME).astype(float)
  fraction = sf.occlusion_fraction(occlusion, visible)
  np.testing.assert_allclose(fraction, [1 / 3, 0.5, 0.0])
  np.testing.assert_array_equal(sf.occlusion_bin(fraction), [1, 2, 0])
  # MPII says nothing of occlusion: such a person falls in no bin (not
  # 'unoccluded'); an unknown reason of a joint that is not annotated counts
  # for nothing.
  occlusion = np.array([[sf.UNKNOWN] * 4, [0, 0, 2, sf.UNKNOWN]])
  fraction = sf.occlusion_fraction(occlusion, np.array([[1, 1, 1, 1], [1, 1, 1, 0]]))
  assert np.isnan(fraction[0]) and fraction[1] == pytest.approx(1 / 3)
  np.testing.assert_array_equal(sf.occlusion_bin(fraction), [sf.NO_BIN, 1])


def test_config_names():
  config = ssb.config_from_name("n40_10_s2_p2-3")
  assert (config.num_train, config.seed, config.options.max_persons) == (40, 2, 3)
  assert ssb.config_from_name("default") is None
  with pytest.raises(ValueError, match="1 <= min <= max"):
    ssb.config_from_name("n40_10_s2_p3-2")


def test_tiny_build_gives_padded_resumable_batches(tmp_path):
  import ml_collections  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict(dict(
      name="synthetic_scenes/tiny", data_dir=str(tmp_path), image_size=128, max_persons=3,
      num_threads=1, cache_decoded_mb=0, prefetch_batches=1))
  it = scene_pipeline.create_scene_iterator(config, split="train", batch_size=4, seed=0,
                                            shuffle=True, repeat=True)
  first, second = next(it), next(it)
  assert first["image"].shape == (4, 128, 128, 3)
  assert first["joints"].shape == (4, 3, 16, 2) and first["persons_valid"].shape == (4, 3)
  np.testing.assert_array_equal(first["persons_valid"].sum(1),
                                np.minimum(first["num_persons"], 3))
  assert not first["joints_visible"][~first["persons_valid"]].any()
  # The same scene at full size: coordinates halve about pixel centres.
  source = scene_pipeline._builder(config).as_data_source("train")
  name = first["image_name"][0]
  record = next(source[i] for i in range(len(source)) if source[i]["image_name"] == name)
  n = min(len(record["joints"]), 3)
  shown = record["joints_visible"][:n] > 0
  np.testing.assert_allclose(first["joints"][0, :n][shown],
                             (record["joints"][:n][shown] + 0.5) / 2 - 0.5, atol=1e-4)
  np.testing.assert_allclose(first["head_size"][0, :n], record["head_size"][:n] / 2, rtol=1e-5)
  state = it.get_state()
  third = next(it)
  again = scene_pipeline.create_scene_iterator(config, split="train", batch_size=4, seed=0,
                                               shuffle=True, repeat=True)
  again.set_state(state)
  np.testing.assert_array_equal(next(again)["joints"], third["joints"])
  assert not np.array_equal(second["image_name"], third["image_name"])
  it.close()
  again.close()
