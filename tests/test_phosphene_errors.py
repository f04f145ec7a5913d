"""phosphene_loss.phosphene_errors: the phosphene-space error of evaluation."""

import pytest

from triplet_pose import config as config_lib
from configs import tiny
from triplet_pose import data
from triplet_pose import keypoints as kp
from triplet_pose import phosphene_loss


@pytest.fixture(scope="module")
def setup():
  config = config_lib.phosphene_config()
  config.resolution, config.num_phosphenes = 48, 400
  sim = phosphene_loss.create_simulator(config)
  batch = next(data.create_iterator(tiny.get_config().input, split="validation",
                                    batch_size=6, seed=0, shuffle=False, repeat=False))
  return sim, batch


@pytest.mark.parametrize("kset", [kp.JOINTS, kp.CONTOUR], ids=lambda s: s.name)
def test_true_pose_scores_perfectly_and_a_shifted_one_does_not(setup, kset):
  sim, batch = setup
  truth, visible = batch[kset.name], batch[kset.visible_key]
  kwargs = dict(keypoint_set=kset, image_size=64, batch_size=4)  # two batches
  same = phosphene_loss.phosphene_errors(sim, truth, truth, visible, **kwargs)
  assert same["phosphene_nmse"] == pytest.approx(0.0, abs=1e-6)
  assert same["phosphene_ssim"] == pytest.approx(1.0, abs=1e-5)
  near = phosphene_loss.phosphene_errors(sim, truth + 1.0, truth, visible, **kwargs)
  far = phosphene_loss.phosphene_errors(sim, truth + 12.0, truth, visible, **kwargs)
  assert 0.0 < near["phosphene_nmse"] < far["phosphene_nmse"]
  assert far["phosphene_nmse"] > 0.5
  assert 1.0 > near["phosphene_ssim"] > far["phosphene_ssim"]


def test_bad_input_is_named(setup):
  sim, batch = setup
  with pytest.raises(ValueError, match=r"predicted \(6, 15, 2\)"):
    phosphene_loss.phosphene_errors(sim, batch["joints"][:, :15], batch["joints"],
                                    batch["joints_visible"], keypoint_set=kp.JOINTS,
                                    image_size=64)
