"""Flip test, mapping back to original pixels, three-setting evaluation, launch.evaluate."""

import functools
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tiny_workdirs
from configs import tiny
from triplet_pose import data
from triplet_pose import evaluation
from triplet_pose import heatmaps as hm
from triplet_pose import keypoints as kp
from triplet_pose import train

REPO = tiny_workdirs.pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def workdirs(tmp_path_factory):
  return tiny_workdirs.trained(tmp_path_factory)


def test_unflip_heatmaps_matches_flip_keypoints():
  rng = np.random.default_rng(0)
  points = rng.uniform(0, 15, size=(2, kp.NUM_JOINTS, 2)).astype(np.float32)
  maps = hm.render(jnp.asarray(points), height=16)
  flipped = hm.render(jnp.asarray(kp.flip_keypoints(points, 16)), height=16)
  np.testing.assert_allclose(evaluation.unflip_heatmaps(maps), flipped, atol=1e-5)
  contour = rng.uniform(0, 15, size=(1, kp.NUM_CONTOUR, 2)).astype(np.float32)
  np.testing.assert_allclose(
      evaluation.unflip_heatmaps(hm.render(jnp.asarray(contour), height=16)),
      hm.render(jnp.asarray(kp.flip_keypoints(contour, 16, kind="contour")), height=16),
      atol=1e-5)


def test_flip_input_images_mirrors_image_and_permutes_joint_channels():
  config = tiny.get_config("target=contour")
  rng = np.random.default_rng(2)
  joints = rng.uniform(0, 63, size=(2, kp.NUM_JOINTS, 2)).astype(np.float32)
  image = rng.uniform(size=(2, 64, 64, 3)).astype(np.float32)
  render = lambda j: evaluation.inputs.joint_input_heatmaps(
      config, jnp.asarray(j), jnp.ones((2, 16)), image_size=64)
  x = jnp.concatenate([jnp.asarray(image), render(joints)], axis=-1)
  flipped = evaluation.flip_input_images(x)
  np.testing.assert_array_equal(flipped[..., :3], image[:, :, ::-1])
  np.testing.assert_allclose(flipped[..., 3:], render(kp.flip_keypoints(joints, 64)),
                             atol=1e-5)


def _symmetric_image(size, seed=0):
  half = np.random.default_rng(seed).uniform(size=(1, size, size // 2, 3))
  return jnp.asarray(np.concatenate([half, half[:, :, ::-1]], axis=2), jnp.float32)


def _assert_mirror_symmetric(maps, coords, width, kind):
  np.testing.assert_allclose(evaluation.unflip_heatmaps(maps), maps, rtol=1e-5, atol=1e-6)
  perm = np.asarray(kp.flip_permutation(kind))
  paired = perm != np.arange(len(perm))  # left/right pairs (a centre joint may tie)
  mirrored = np.asarray(kp.flip_keypoints(np.asarray(coords), width, kind=kind))
  np.testing.assert_allclose(mirrored[:, paired], np.asarray(coords)[:, paired], atol=1e-4)


def test_flip_test_of_symmetric_input_is_symmetric():
  config = tiny.get_config("stacks=1")
  model = train.create_model(config)
  x = _symmetric_image(64)
  variables = jax.jit(functools.partial(model.init, train=False))(jax.random.key(0), x)
  apply = functools.partial(model.apply, train=False)
  predict = jax.jit(evaluation.predict_heatmaps, static_argnums=0,
                    static_argnames="flip_test")
  maps = predict(apply, variables, x, flip_test=True)
  coords, _ = evaluation.decode_to_input_pixels(maps, 64)
  _assert_mirror_symmetric(maps, coords, 64, "joints")
  # Without the flip test the same input gives an asymmetric answer.
  plain = predict(apply, variables, x, flip_test=False)
  assert not np.allclose(evaluation.unflip_heatmaps(plain), plain, atol=1e-4)


def test_flip_test_of_triplet_model_permutes_joint_channels():
  config = tiny.get_config("stacks=1,target=contour")
  model = train.create_model(config)
  x = _symmetric_image(64)
  right = np.random.default_rng(1).uniform(4, 28, size=(kp.NUM_JOINTS, 2))
  joints = right.copy()
  for k, m in enumerate(kp.JOINT_FLIP_PERMUTATION):
    if k == m:
      joints[k, 0] = 31.5  # centre joints on the mirror axis
    elif k < m or k in (10, 11, 12):  # one side, mirrored to the other below
      joints[m] = [63 - right[k, 0], right[k, 1]]
  joints = joints[None].astype(np.float32)
  np.testing.assert_allclose(kp.flip_keypoints(joints, 64), joints, atol=1e-5)
  inputs_ = jnp.concatenate([x, evaluation.inputs.joint_input_heatmaps(
      config, jnp.asarray(joints), jnp.ones((1, 16)), image_size=64)], axis=-1)
  variables = jax.jit(functools.partial(model.init, train=False))(jax.random.key(0), inputs_)
  maps = jax.jit(functools.partial(
      evaluation.predict_heatmaps, functools.partial(model.apply, train=False)))(
          variables, inputs_)
  coords, _ = evaluation.decode_to_input_pixels(maps, 64)
  _assert_mirror_symmetric(maps, coords, 64, "contour")


def _target_heatmaps(batch, key, shift=0.0):
  points = batch[key] + shift
  coords = hm.rescale_coordinates(jnp.asarray(points), 64, 16)
  return np.asarray(hm.render(coords, height=16))


def _fake_batch(*, scale=1.0, offset=(0.0, 0.0)):
  config = tiny.get_config()
  batch = next(data.create_iterator(config.input, split="validation", batch_size=4,
                                    seed=0, shuffle=False, repeat=False))
  batch["crop_to_original"] = np.tile(
      np.array([[scale, 0, offset[0]], [0, scale, offset[1]]], np.float32), (4, 1, 1))
  batch["valid"][-1] = False  # padding must not count
  return config, batch


@pytest.mark.parametrize("scale,offset", [(1.0, (0.0, 0.0)), (3.5, (100.0, -40.0))])
def test_training_eval_summary_scores_ground_truth_heatmaps(scale, offset):
  config, batch = _fake_batch(scale=scale, offset=offset)
  scalars, images = evaluation.training_eval_summary(
      config, _target_heatmaps(batch, "joints"), batch)
  assert scalars["pckh_Mean"] == 1.0 and scalars["pckh_Head"] == 1.0
  assert scalars["pckh_Mean@0.1"] < 1.0  # heatmap cells are 0.6 head sizes wide
  panel = images["panel"]
  assert panel.dtype == np.uint8 and panel.ndim == 3 and panel.shape[-1] == 3
  assert panel.std() > 10
  # Moving every joint by one head size (6.4 crop px) fails them all. Each
  # moves toward the centre in x, so none leaves the heatmap (where decoding
  # would clamp it back toward the truth).
  direction = -np.sign(batch["joints"][..., :1] - 31.5)
  shift = np.concatenate([6.4 * direction, np.zeros_like(direction)], -1).astype(np.float32)
  scalars, _ = evaluation.training_eval_summary(
      config, [_target_heatmaps(batch, "joints", shift)], [batch])
  assert scalars["pckh_Mean"] == 0.0


def test_training_eval_summary_contour():
  config, batch = _fake_batch()
  config = tiny.get_config("target=contour")
  scalars, _ = evaluation.training_eval_summary(
      config, _target_heatmaps(batch, "contour"), batch)
  assert scalars["pckh_Mean"] == 1.0 and "pckh_Neck" in scalars
  # A combined model's contour heatmaps, named explicitly.
  config.model.target = "combined"
  scalars, _ = evaluation.training_eval_summary(
      config, _target_heatmaps(batch, "contour"), batch, keypoints="contour")
  assert scalars["pckh_Mean"] == 1.0


def test_to_original_and_crop_scale():
  affine = np.array([[[2.0, 0, 10], [0, 2.0, 20]]])
  np.testing.assert_allclose(evaluation.to_original(np.array([[[1.0, 1.0]]]), affine),
                             [[[12.0, 22.0]]])
  np.testing.assert_allclose(evaluation.crop_scale(affine), [2.0])


def test_triplet_evaluation_has_three_settings(workdirs):
  results = evaluation.evaluate_checkpoints(workdirs["triplet"],
                                            joint_workdir=str(workdirs["joint"]),
                                            num_batches=2)
  settings = results["settings"]
  assert set(settings) == {evaluation.JOINT, evaluation.TRIPLET_PREDICTED,
                           evaluation.TRIPLET_GT}
  assert settings[evaluation.JOINT]["keypoints"] == "joints"
  assert settings[evaluation.TRIPLET_GT]["keypoints"] == "contour"
  assert results["persons"] == 8 and results["step"] == 2
  for row in settings.values():
    assert set(row["groups"]) >= {"Mean", "Shoulder"}
    assert all(0.0 <= v <= 1.0 for v in row["groups"].values() if np.isfinite(v))
  table = evaluation.format_table(results)
  assert "triplet, predicted joints" in table and "Sho." in table and "Neck" in table


def test_joint_model_is_refused_as_joint_workdir_of_wrong_kind(workdirs):
  with pytest.raises(ValueError, match="expected 'joints'"):
    evaluation.evaluate_checkpoints(workdirs["triplet"],
                                    joint_workdir=str(workdirs["triplet"]), num_batches=1)


def test_launch_evaluate_writes_files(workdirs, tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "launch.evaluate", f"--workdir={workdirs['joint']}",
       "--config=configs/tiny.py", "--num_batches=2", "--checkpoint_step=2"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  out = workdirs["joint"] / "eval" / "2"
  metrics = json.loads((out / "metrics.json").read_text())
  assert list(metrics["settings"]) == [evaluation.JOINT]
  assert metrics["settings"][evaluation.JOINT]["persons"] == 8
  assert (out / "pckh_curve.png").read_bytes()[:4] == b"\x89PNG"
  assert "Head" in result.stdout and "joint model" in result.stdout
