"""Flip test of joint, triplet and combined models; PoseModels; parameter counts; timing."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from triplet_pose import heatmaps as hm
from triplet_pose import inference
from triplet_pose import keypoints as kp
from triplet_pose import workdir


def test_unflip_heatmaps_matches_flip_keypoints():
  rng = np.random.default_rng(0)
  points = rng.uniform(0, 15, size=(2, kp.NUM_JOINTS, 2)).astype(np.float32)
  maps = hm.render(jnp.asarray(points), height=16)
  flipped = hm.render(jnp.asarray(kp.JOINTS.flip(points, 16)), height=16)
  np.testing.assert_allclose(inference.unflip_heatmaps(maps, kp.JOINTS), flipped, atol=1e-5)
  contour = rng.uniform(0, 15, size=(1, kp.NUM_CONTOUR, 2)).astype(np.float32)
  np.testing.assert_allclose(
      inference.unflip_heatmaps(hm.render(jnp.asarray(contour), height=16), kp.CONTOUR),
      hm.render(jnp.asarray(kp.CONTOUR.flip(contour, 16)), height=16),
      atol=1e-5)


def test_flip_input_images_mirrors_image_and_permutes_joint_channels():
  config = tiny.get_config("target=contour")
  rng = np.random.default_rng(2)
  joints = rng.uniform(0, 63, size=(2, kp.NUM_JOINTS, 2)).astype(np.float32)
  image = rng.uniform(size=(2, 64, 64, 3)).astype(np.float32)
  render = lambda j: inference.inputs.joint_input_heatmaps(
      config, jnp.asarray(j), jnp.ones((2, 16)), image_size=64)
  x = jnp.concatenate([jnp.asarray(image), render(joints)], axis=-1)
  flipped = inference.flip_input_images(x)
  np.testing.assert_array_equal(flipped[..., :3], image[:, :, ::-1])
  np.testing.assert_allclose(flipped[..., 3:], render(kp.JOINTS.flip(joints, 64)),
                             atol=1e-5)
  # An RGB input (joint or combined model) is only mirrored.
  np.testing.assert_array_equal(inference.flip_input_images(jnp.asarray(image)),
                                image[:, :, ::-1])


def _symmetric_image(size, seed=0):
  half = np.random.default_rng(seed).uniform(size=(1, size, size // 2, 3))
  return jnp.asarray(np.concatenate([half, half[:, :, ::-1]], axis=2), jnp.float32)


def _assert_mirror_symmetric(maps, coords, width, kind):
  np.testing.assert_allclose(inference.unflip_heatmaps(maps, kp.get(kind)), maps,
                             rtol=1e-5, atol=1e-6)
  perm = np.asarray(kp.get(kind).flip_permutation)
  paired = perm != np.arange(len(perm))  # left/right pairs (a centre joint may tie)
  mirrored = np.asarray(kp.get(kind).flip(np.asarray(coords), width))
  np.testing.assert_allclose(mirrored[:, paired], np.asarray(coords)[:, paired], atol=1e-4)


def _init(config, x):
  model = workdir.create_model(config)
  variables = jax.jit(functools.partial(model.init, train=False))(jax.random.key(0), x)
  return functools.partial(model.apply, train=False), variables


_predict = jax.jit(inference.predict_heatmaps, static_argnums=0, static_argnames="flip_test")


def test_flip_test_of_symmetric_input_is_symmetric():
  x = _symmetric_image(64)
  apply, variables = _init(tiny.get_config("stacks=1"), x)
  maps = _predict(apply, variables, x, flip_test=True)["joints"]
  coords, _ = hm.decode_to_pixels(maps, 64)
  _assert_mirror_symmetric(maps, coords, 64, "joints")
  # Without the flip test the same input gives an asymmetric answer.
  plain = _predict(apply, variables, x, flip_test=False)["joints"]
  assert not np.allclose(inference.unflip_heatmaps(plain, kp.JOINTS), plain, atol=1e-4)


def test_flip_test_of_triplet_model_permutes_joint_channels():
  config = tiny.get_config("stacks=1,target=contour")
  x = _symmetric_image(64)
  right = np.random.default_rng(1).uniform(4, 28, size=(kp.NUM_JOINTS, 2))
  joints = right.copy()
  for k, m in enumerate(kp.JOINT_FLIP_PERMUTATION):
    if k == m:
      joints[k, 0] = 31.5  # centre joints on the mirror axis
    elif k < m or k in (10, 11, 12):  # one side, mirrored to the other below
      joints[m] = [63 - right[k, 0], right[k, 1]]
  joints = joints[None].astype(np.float32)
  np.testing.assert_allclose(kp.JOINTS.flip(joints, 64), joints, atol=1e-5)
  inputs_ = jnp.concatenate([x, inference.inputs.joint_input_heatmaps(
      config, jnp.asarray(joints), jnp.ones((1, 16)), image_size=64)], axis=-1)
  apply, variables = _init(config, inputs_)
  maps = _predict(apply, variables, inputs_, flip_test=True)["contour"]
  coords, _ = hm.decode_to_pixels(maps, 64)
  _assert_mirror_symmetric(maps, coords, 64, "contour")


def test_flip_test_of_combined_model_unflips_each_output_with_its_permutation():
  config = tiny.get_config("stacks=1,target=combined")
  config.model.triplet_stacks = 1
  x = _symmetric_image(64)
  apply, variables = _init(config, x)
  out = _predict(apply, variables, x, flip_test=True)
  joint_maps, contour_maps = out["joints"], out["contour"]
  assert joint_maps.shape == (1, 16, 16, kp.NUM_JOINTS)
  assert contour_maps.shape == (1, 16, 16, kp.NUM_CONTOUR)
  for maps, kind in ((joint_maps, "joints"), (contour_maps, "contour")):
    coords, _ = hm.decode_to_pixels(maps, 64)
    _assert_mirror_symmetric(maps, coords, 64, kind)
  plain_contour = _predict(apply, variables, x, flip_test=False)["contour"]
  assert not np.allclose(inference.unflip_heatmaps(plain_contour, kp.CONTOUR), plain_contour,
                         atol=1e-4)
  # On any image: the average of the direct and the mirrored pass (same
  # shapes as above: no new compilation).
  y = jnp.asarray(np.random.default_rng(3).uniform(size=(1, 64, 64, 3)), jnp.float32)
  both = _predict(apply, variables, y, flip_test=True)
  direct = _predict(apply, variables, y, flip_test=False)
  mirrored = _predict(apply, variables, y[:, :, ::-1], flip_test=False)
  for name in ("joints", "contour"):
    np.testing.assert_allclose(
        both[name], 0.5 * (direct[name] + inference.unflip_heatmaps(mirrored[name], kp.get(name))),
        rtol=1e-4, atol=1e-5)


class _Loaded:
  """A stand-in for LoadedModel with only a config."""

  def __init__(self, target, workdir="w"):
    self.config = tiny.get_config(f"target={target}")
    self.target, self.workdir = target, workdir


def test_pose_models_refuses_wrong_combinations():
  joint, triplet, combined = _Loaded("joints"), _Loaded("contour"), _Loaded("combined")
  assert inference.PoseModels(combined=combined).image_size == 64
  with pytest.raises(ValueError, match="without a joint or triplet"):
    inference.PoseModels(joint=joint, combined=combined)
  with pytest.raises(ValueError, match="PoseModels.joint must be"):
    inference.PoseModels(joint=combined)
  with pytest.raises(ValueError, match="PoseModels.triplet must be"):
    inference.PoseModels(joint=joint, triplet=joint)
  assert inference.PoseModels(joint=joint, triplet=triplet).image_size == 64
  with pytest.raises(ValueError, match="at least one"):
    inference.PoseModels()
  big = _Loaded("contour")
  big.config.input.image_size = 128
  with pytest.raises(ValueError, match="different input sizes"):
    _ = inference.PoseModels(joint=joint, triplet=big).image_size


def test_count_parameters_excludes_batch_stats():
  variables = nn.Sequential([nn.Dense(3), nn.BatchNorm(use_running_average=True)]).init(
      jax.random.key(0), jnp.zeros((1, 4)))
  assert "batch_stats" in variables
  assert inference.count_parameters(variables) == 4 * 3 + 3 + 2 * 3
  assert inference.count_parameters(variables["params"]) == 21


def test_ms_per_image_warms_up_and_takes_the_median():
  calls = []

  def fn(x):
    calls.append(1)
    return jnp.sin(x)

  ms = inference.ms_per_image(fn, jnp.ones((8, 8)), batch_size=4, repeats=3)
  assert len(calls) == 4 and ms > 0
  calls.clear()  # a function that has already run: no warm-up call
  inference.ms_per_image(fn, jnp.ones((8, 8)), batch_size=4, repeats=3, warm_up=False)
  assert len(calls) == 3
  with pytest.raises(ValueError, match="repeats"):
    inference.ms_per_image(fn, jnp.ones(2), batch_size=1, repeats=0)
