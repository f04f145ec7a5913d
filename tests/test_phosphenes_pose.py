"""Pose-to-phosphene rendering: geometry, visibility, batching and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from triplet_pose import keypoints as kp
from triplet_pose import phosphenes

OUT = (48, 48)


def _pose(rng, scale=48.0):
  joints = rng.uniform(8, scale - 8, (kp.NUM_JOINTS, 2))
  contour = rng.uniform(8, scale - 8, (kp.NUM_CONTOUR, 2))
  return joints, contour


def test_pixel_centre_mapping():
  pts = jnp.array([[0.0, 0.0], [127.5, 63.5], [255.0, 127.0]])
  out = phosphenes.image_to_simulator_coordinates(pts, image_size=(128, 256),
                                                  output_size=(64, 64))
  np.testing.assert_allclose(out, [[-0.375, -0.25], [31.5, 31.5], [63.375, 63.25]])


def test_skeleton_edge_is_an_antialiased_line():
  joints = np.zeros((kp.NUM_JOINTS, 2))
  joints[0] = [10.0, 20.0]  # r_ankle
  joints[1] = [38.0, 20.0]  # r_knee: SKELETON_EDGES has (0, 1).
  vis = np.zeros(kp.NUM_JOINTS)
  vis[[0, 1]] = 1
  mask = np.asarray(phosphenes.render_pose(
      joints, image_size=OUT, output_size=OUT, joints_visible=vis, line_width=3.0,
      draw_joints=False))
  np.testing.assert_allclose(mask[20, 10:39], 1.0)
  np.testing.assert_allclose(mask[21, 10:39], 1.0)  # Distance 1 < 1.5.
  np.testing.assert_allclose(mask[22, 15:35], 0.0)  # Distance 2 = 1.5 + 0.5.
  np.testing.assert_allclose(mask[20, 40], 0.0)
  np.testing.assert_allclose(mask[20, 39], 1.0)  # 1 px beyond the end: round cap.
  assert mask.sum() == pytest.approx(3 * 28 + np.pi * 1.5 ** 2, rel=0.08)
  # Hidden joints draw nothing, even if they hold NaN.
  joints[1] = np.nan
  vis[1] = 0
  mask = phosphenes.render_pose(joints, image_size=OUT, output_size=OUT,
                                joints_visible=vis, draw_joints=False)
  assert float(jnp.abs(mask).max()) == 0.0


def test_joint_points_and_contour_edges():
  rng = np.random.default_rng(0)
  joints, contour = _pose(rng)
  mask = np.asarray(phosphenes.render_pose(
      joints, image_size=OUT, output_size=OUT, point_radius=2.0,
      draw_skeleton=False))
  for x, y in np.round(joints).astype(int):
    assert mask[y, x] == 1.0  # Pixel centre within 0.71 px of the joint.
  assert 0 < mask.mean() < 0.5
  contour_mask = np.asarray(phosphenes.render_pose(
      contour=contour, image_size=OUT, output_size=OUT))
  # Every contour edge passes through its midpoint pixel.
  for a, b in kp.CONTOUR_EDGES:
    mx, my = np.round((contour[a] + contour[b]) / 2).astype(int)
    assert contour_mask[my, mx] > 0.2


def test_filled_limb_outline():
  contour = np.zeros((kp.NUM_CONTOUR, 2))
  seg = kp.LIMB_SEGMENTS["right_thigh"]
  contour[seg["medial"][0]] = [10.0, 10.0]
  contour[seg["medial"][1]] = [10.0, 40.0]
  contour[seg["lateral"][0]] = [30.0, 10.0]
  contour[seg["lateral"][1]] = [30.0, 40.0]
  vis = np.zeros(kp.NUM_CONTOUR)
  vis[[*seg["medial"], *seg["lateral"]]] = 1
  mask = np.asarray(phosphenes.render_pose(
      contour=contour, contour_visible=vis, image_size=OUT, output_size=OUT,
      draw_contour=False, fill_limbs=True))
  np.testing.assert_allclose(mask[11:40, 11:30], 1.0)
  np.testing.assert_allclose(mask[10, 20], 0.5, atol=1e-5)  # On the border: half covered.
  assert mask[:, :9].max() == 0.0 and mask[42:].max() == 0.0
  assert mask.sum() == pytest.approx(20 * 30, rel=0.01)


def test_batch_equals_single_and_vmap():
  rng = np.random.default_rng(1)
  poses = [_pose(rng) for _ in range(3)]
  joints = np.stack([p[0] for p in poses])
  contour = np.stack([p[1] for p in poses])
  kwargs = dict(image_size=(96, 96), output_size=OUT, fill_limbs=True)
  batch = phosphenes.render_pose(joints * 2, contour * 2, **kwargs)
  assert batch.shape == (3,) + OUT
  for i in range(3):
    single = phosphenes.render_pose(joints[i] * 2, contour[i] * 2, **kwargs)
    np.testing.assert_allclose(batch[i], single, atol=1e-5)
  vmapped = jax.vmap(lambda j, c: phosphenes.render_pose(j, c, **kwargs))(
      jnp.asarray(joints * 2), jnp.asarray(contour * 2))
  np.testing.assert_allclose(vmapped, batch, atol=1e-5)
  with pytest.raises(ValueError, match="joints must be"):
    phosphenes.render_pose(joints[:, :5], image_size=OUT, output_size=OUT)


def test_gradient_matches_finite_differences():
  rng = np.random.default_rng(2)
  with jax.enable_x64(True):
    joints, contour = (jnp.asarray(a, jnp.float64) for a in _pose(rng))
    weights = jnp.asarray(rng.uniform(0, 1, OUT))

    @jax.jit
    def loss(j, c):
      mask = phosphenes.render_pose(j, c, image_size=OUT, output_size=OUT,
                                    line_width=2.5, fill_limbs=True)
      return jnp.sum(mask * weights)

    gj, gc = jax.jit(jax.grad(loss, argnums=(0, 1)))(joints, contour)
    assert np.abs(gj).max() > 0 and np.abs(gc).max() > 0
    h = 1e-5
    for arr, grad, idx, is_joint in ((joints, gj, (1, 0), True), (joints, gj, (11, 1), True),
                                     (contour, gc, (4, 0), False), (contour, gc, (17, 1), False)):
      e = jnp.zeros_like(arr).at[idx].set(h)
      if is_joint:
        fd = (loss(arr + e, contour) - loss(arr - e, contour)) / (2 * h)
      else:
        fd = (loss(joints, arr + e) - loss(joints, arr - e)) / (2 * h)
      np.testing.assert_allclose(grad[idx], fd, rtol=1e-4, atol=1e-6)


def test_pose_to_phosphenes_end_to_end():
  params = phosphenes.default_params()
  params["run"]["resolution"] = [64, 48]  # W, H.
  params["thresholding"]["use_threshold"] = False
  x, y = phosphenes.phosphenes_by_magnification(params, 400, key=jax.random.PRNGKey(0))
  sim = phosphenes.Simulator.create(params, x, y)
  rng = np.random.default_rng(3)
  joints = np.stack([_pose(rng, scale=128)[0] for _ in range(2)])
  state = sim.init_state((2,))
  for _ in range(3):
    state, image, mask = phosphenes.pose_to_phosphenes(sim, state, joints,
                                                       image_size=(128, 128))
  assert image.shape == (2, 48, 64) and mask.shape == (2, 48, 64)
  assert float(image.max()) > 0.05
  # Phosphenes appear where the mask is, not elsewhere.
  on, off = np.asarray(mask) > 0.5, np.asarray(mask) == 0
  assert np.asarray(image)[on].mean() > 3 * np.asarray(image)[off].mean()
