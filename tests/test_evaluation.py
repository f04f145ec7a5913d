"""PCKh during training, mapping back to original pixels, evaluation settings, launch.evaluate.

The flip test itself is tested in test_inference.py.
"""

import json
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

import tiny_workdirs
from configs import tiny
from triplet_pose import data
from triplet_pose import evaluation
from triplet_pose import heatmaps as hm
from triplet_pose import inference

REPO = tiny_workdirs.pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def workdirs(tmp_path_factory):
  return tiny_workdirs.trained(tmp_path_factory)


@pytest.fixture(scope="session")
def combined_workdir(tmp_path_factory):
  return tiny_workdirs.combined(tmp_path_factory)


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
                                            num_batches=2, timing_batches=1)
  settings = results["settings"]
  assert set(settings) == {evaluation.JOINT, evaluation.TRIPLET_PREDICTED,
                           evaluation.TRIPLET_GT}
  assert settings[evaluation.JOINT]["keypoints"] == "joints"
  assert settings[evaluation.TRIPLET_GT]["keypoints"] == "contour"
  assert results["persons"] == 8 and results["step"] == 2
  for row in settings.values():
    assert set(row["groups"]) >= {"Mean", "Shoulder"}
    assert all(0.0 <= v <= 1.0 for v in row["groups"].values() if np.isfinite(v))
  # The realistic setting runs both networks: their parameters add up.
  params = {k: v["params"] for k, v in settings.items()}
  assert params[evaluation.TRIPLET_GT] > params[evaluation.JOINT] > 0  # 19 input channels
  assert params[evaluation.TRIPLET_PREDICTED] == (params[evaluation.JOINT]
                                                  + params[evaluation.TRIPLET_GT])
  assert all(v["ms_per_image"] > 0 for v in settings.values())
  assert results["timing"]["batch_size"] == 4 and results["timing"]["device"]
  for row in settings.values():  # barely trained models: far from the true pose
    assert 0.0 < row["phosphene_nmse"] and row["phosphene_ssim"] < 1.0
  table = evaluation.format_table(results)
  assert "Phosphene-space error" in table and "triplet, ground-truth joints (contour)" in table
  assert "triplet, predicted joints" in table and "Sho." in table and "Neck" in table
  assert "Params" in table and "ms/img" in table
  row = next(line for line in table.splitlines() if line.startswith("joint model"))
  assert row.split()[-2] == evaluation._format_count(params[evaluation.JOINT])


def test_format_count():
  assert [evaluation._format_count(n) for n in (850, 12_345, 850_000, 6_730_000)] == [
      "850", "12.3k", "850k", "6.73M"]
  assert [evaluation._format_ms(v) for v in (0.0412, 8.854, 10.44, 1234.5)] == [
      "0.0412", "8.85", "10.4", "1234"]


def test_combined_setting_runs_one_network(combined_workdir):
  models = inference.PoseModels(combined=inference.load_model(combined_workdir))
  settings = evaluation.settings_for(models)
  assert list(settings) == [evaluation.COMBINED_JOINTS, evaluation.COMBINED_CONTOUR]
  assert [s.prediction for s in settings.values()] == ["joints", "contour"]
  assert all(s.models.combined is models.combined for s in settings.values())
  with pytest.raises(ValueError, match="joint_workdir is for a triplet model"):
    evaluation.evaluate_checkpoints(combined_workdir, joint_workdir=str(combined_workdir))


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


def test_launch_evaluate_combined_workdir(combined_workdir):
  result = subprocess.run(
      [sys.executable, "-m", "launch.evaluate", f"--workdir={combined_workdir}",
       "--num_batches=2", "--timing_batches=2"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = json.loads((combined_workdir / "eval" / "2" / "metrics.json").read_text())
  assert metrics["target"] == "combined" and metrics["timing"]["timed_batches"] == 2
  settings = metrics["settings"]
  assert list(settings) == [evaluation.COMBINED_JOINTS, evaluation.COMBINED_CONTOUR]
  assert settings[evaluation.COMBINED_JOINTS]["keypoints"] == "joints"
  assert settings[evaluation.COMBINED_CONTOUR]["keypoints"] == "contour"
  assert "Neck" in settings[evaluation.COMBINED_CONTOUR]["groups"]
  for row in settings.values():
    assert row["persons"] == 8 and row["step"] == 2
    assert row["params"] > 0 and row["ms_per_image"] > 0
    assert 0.0 <= row["groups"]["Mean"] <= 1.0
  # One network: one parameter count and one measurement for both rows.
  assert settings[evaluation.COMBINED_JOINTS]["params"] == settings[
      evaluation.COMBINED_CONTOUR]["params"]
  assert settings[evaluation.COMBINED_JOINTS]["ms_per_image"] == settings[
      evaluation.COMBINED_CONTOUR]["ms_per_image"]
  assert "Joints" in result.stdout and "Contour points" in result.stdout
  # A PCKh row per table, and a phosphene-space row per kind of keypoint.
  assert result.stdout.count("combined model") == 4
  assert "combined model (joints)" in result.stdout and "combined model (contour)" in result.stdout
