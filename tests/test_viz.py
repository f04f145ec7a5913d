"""Figures: panels render, heatmap overlays peak in the right place, loss curves read logs."""

import shutil

import jax
import numpy as np
import pytest

from triplet_pose import heatmaps as hm
from triplet_pose import keypoints as kp
from triplet_pose import phosphenes
from triplet_pose import viz
from triplet_pose.phosphenes import readability


def _pose(seed=0):
  rng = np.random.default_rng(seed)
  joints = rng.uniform(10, 54, size=(kp.NUM_JOINTS, 2))
  contour = joints[np.asarray(kp.CONTOUR_PARENT_JOINT)] + rng.normal(0, 2, (kp.NUM_CONTOUR, 2))
  return joints, contour


def test_pose_panel_has_two_rows_of_three():
  joints, contour = _pose()
  image = np.full((64, 64, 3), 128, np.uint8)
  maps = np.asarray(hm.render(np.asarray(joints[None] / 4, np.float32), height=16))[0]
  phos = np.zeros((32, 32))
  fig = viz.pose_panel(image, viz.PanelInputs(
      points={"joints": joints, "contour": contour},
      heatmaps={"joints": maps, "contour": np.zeros((16, 16, 26))},
      phosphenes={"joints": (phos, None), "contour": (phos, phos)},
      ground_truth={"joints": joints + 1}), title="t")
  assert len([ax for ax in fig.axes if ax.get_visible()]) == 6
  array = viz.figure_to_array(fig)
  assert array.dtype == np.uint8 and array.shape == (630, 900, 3)
  # Joints only: one row, and the skeleton's colours appear in the picture.
  array = viz.figure_to_array(
      viz.pose_panel(image, viz.PanelInputs(points={"joints": joints})))
  red = (array[..., 0] > 200) & (array[..., 1] < 90) & (array[..., 2] < 90)
  blue = (array[..., 2] > 200) & (array[..., 0] < 90)
  assert red.sum() > 20 and blue.sum() > 20


def test_heatmap_overlay_peaks_at_the_keypoint():
  maps = np.asarray(hm.render(np.array([[[12.0, 3.0]]], np.float32), height=16))[0]
  overlay = viz.heatmap_overlay(np.zeros((64, 64, 3), np.uint8), maps)
  y, x = np.unravel_index(overlay.sum(-1).argmax(), (64, 64))
  assert abs(x - 49.5) <= 2 and abs(y - 13.5) <= 2  # cell (12, 3) of a 4x grid


def test_prediction_grid_for_joints_and_contour():
  joints, contour = _pose()
  images = np.zeros((3, 64, 64, 3), np.uint8)
  grid = viz.prediction_grid(images, np.stack([joints] * 3), gt=np.stack([joints] * 3),
                             heatmaps=np.zeros((3, 16, 16, 16)), max_examples=2)
  assert grid.shape == (384, 384, 3)  # 2 examples x (poses, heatmaps) at 2.4 in, 80 dpi
  grid = viz.prediction_grid(images, np.stack([contour] * 3))
  assert grid.ndim == 3


def test_pckh_curve_png(tmp_path):
  t = np.linspace(0, 0.5, 11)
  fig = viz.pckh_curve_figure({"a": (t, t * 2), "b": (t, t)})
  path = viz.save_figure(fig, tmp_path / "sub" / "curve.png")
  assert path.read_bytes()[:4] == b"\x89PNG"


def test_loss_per_stack_from_jsonl_and_tensorboard(workdirs, tmp_path):
  series = viz.read_loss_per_stack(workdirs["joint"])
  steps, values = series["train/loss_stack_1"]
  np.testing.assert_array_equal(steps, [1, 2])
  np.testing.assert_allclose(values, [3.0, 1.5])
  assert "eval/eval_loss_stack_1" in series
  # Without metrics.jsonl the TensorBoard logs give the same curves.
  copy = tmp_path / "tb_only"
  shutil.copytree(workdirs["joint"] / "tensorboard", copy / "tensorboard")
  from_tb = viz.read_loss_per_stack(copy)
  np.testing.assert_allclose(from_tb["train/loss_stack_1"][1], [3.0, 1.5])
  fig = viz.loss_per_stack_figure(workdirs["joint"])
  assert viz.figure_to_array(fig).shape[-1] == 3
  with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
    viz.read_loss_per_stack(tmp_path / "nothing")


def test_phosphene_picture_tints_the_mask():
  phosphenes = np.zeros((8, 8))
  phosphenes[2, 2] = 1.0
  mask = np.zeros((8, 8))
  mask[5, :] = 1.0
  picture = viz.phosphene_picture(phosphenes, mask)
  np.testing.assert_allclose(picture[2, 2], [1, 1, 1])
  assert picture[5, 0, 2] > picture[5, 0, 0] == 0.0 and picture[0, 0].sum() == 0.0


def test_readability_figure_crops_to_the_pose(tmp_path):
  params = phosphenes.default_params()
  params["run"]["resolution"] = [64, 64]
  x, y = phosphenes.phosphenes_by_magnification(params, 200, key=jax.random.PRNGKey(0))
  sim = phosphenes.Simulator.create(params, x, y)
  result = readability.compare_overlap_modes(
      sim, readability.CROSSING_CONTOUR, image_size=readability.CROSSING_IMAGE_SIZE,
      style=phosphenes.DrawStyle(line_width=2.0), frames=2)
  fig = viz.overlap_figure({"crossing": result})
  assert len(fig.axes) == 6
  assert [ax.get_title().split("\n")[0] for ax in fig.axes[::2]] == [
      "plain", "nearest in front", "no fill at crossings"]
  # The crop keeps the pose's columns only (the pose spans columns ~21 to ~43
  # of 64, so 12 px of margin leave ~47).
  shown = fig.axes[0].get_images()[0].get_array().shape
  assert shown[0] == 64 and 40 < shown[1] < 56
  path = viz.write_readability_figure(tmp_path / "r.png", sim, line_width=2.0, frames=2)
  assert path.read_bytes()[:4] == b"\x89PNG"
