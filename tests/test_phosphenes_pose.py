"""Pose-to-phosphene rendering: geometry, visibility, batching and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from triplet_pose import keypoints as kp
from triplet_pose import phosphenes
from triplet_pose.phosphenes import readability

OUT = (48, 48)


def _render(joints=None, contour=None, *, joints_visible=None, contour_visible=None,
            image_size, output_size, **style):
  """`render_pose` of the given sets, with `style` as `DrawStyle` fields."""
  points = {k: v for k, v in (("joints", joints), ("contour", contour)) if v is not None}
  visible = {k: v for k, v in (("joints", joints_visible), ("contour", contour_visible))
             if v is not None}
  return phosphenes.render_pose(points, image_size=image_size, output_size=output_size,
                                visible=visible, style=phosphenes.DrawStyle(**style))


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
  mask = np.asarray(_render(
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
  mask = _render(joints, image_size=OUT, output_size=OUT,
                                joints_visible=vis, draw_joints=False)
  assert float(jnp.abs(mask).max()) == 0.0


def test_joint_points_and_contour_edges():
  rng = np.random.default_rng(0)
  joints, contour = _pose(rng)
  mask = np.asarray(_render(
      joints, image_size=OUT, output_size=OUT, point_radius=2.0,
      draw_skeleton=False))
  for x, y in np.round(joints).astype(int):
    assert mask[y, x] == 1.0  # Pixel centre within 0.71 px of the joint.
  assert 0 < mask.mean() < 0.5
  contour_mask = np.asarray(_render(
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
  mask = np.asarray(_render(
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
  batch = _render(joints * 2, contour * 2, **kwargs)
  assert batch.shape == (3,) + OUT
  for i in range(3):
    single = _render(joints[i] * 2, contour[i] * 2, **kwargs)
    np.testing.assert_allclose(batch[i], single, atol=1e-5)
  vmapped = jax.vmap(lambda j, c: _render(j, c, **kwargs))(
      jnp.asarray(joints * 2), jnp.asarray(contour * 2))
  np.testing.assert_allclose(vmapped, batch, atol=1e-5)
  with pytest.raises(ValueError, match="joints must be"):
    _render(joints[:, :5], image_size=OUT, output_size=OUT)


def test_gradient_matches_finite_differences():
  rng = np.random.default_rng(2)
  with jax.enable_x64(True):
    joints, contour = (jnp.asarray(a, jnp.float64) for a in _pose(rng))
    weights = jnp.asarray(rng.uniform(0, 1, OUT))

    @jax.jit
    def loss(j, c):
      mask = _render(j, c, image_size=OUT, output_size=OUT,
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
    state, image, mask = phosphenes.pose_to_phosphenes(sim, state, {"joints": joints},
                                                       image_size=(128, 128))
  assert image.shape == (2, 48, 64) and mask.shape == (2, 48, 64)
  assert float(image.max()) > 0.05
  # Phosphenes appear where the mask is, not elsewhere.
  on, off = np.asarray(mask) > 0.5, np.asarray(mask) == 0
  assert np.asarray(image)[on].mean() > 3 * np.asarray(image)[off].mean()


# --------------------------------------------------------------------------
# Overlapping limbs (`overlap`) and `readability`.

C = kp.CONTOUR_INDEX
# A 64 x 64 torso whose left arm hangs beside it, then crosses it as a
# horizontal forearm band y in [34, 42] from x = 58 to x = 8.
_CROSSING = {
    "right_neck": (26, 4), "left_neck": (38, 4),
    "lateral_right_shoulder": (12, 10), "medial_right_shoulder": (16, 16),
    "lateral_right_hip": (18, 50), "medial_right_hip": (30, 52),
    "medial_left_hip": (34, 52), "lateral_left_hip": (46, 50),
    "medial_left_shoulder": (48, 16), "lateral_left_shoulder": (56, 14),
    "medial_left_elbow": (50, 34), "lateral_left_elbow": (58, 42),
    "medial_left_wrist": (8, 34), "lateral_left_wrist": (8, 42),
}
SIZE = (64, 64)


def _crossing():
  contour = np.zeros((kp.NUM_CONTOUR, 2), np.float32)
  vis = np.zeros(kp.NUM_CONTOUR, np.float32)
  for name, xy in _CROSSING.items():
    contour[C[name]] = xy
    vis[C[name]] = 1
  return contour, vis


def _render_crossing(**kwargs):
  contour, vis = _crossing()
  return np.asarray(_render(
      contour=contour, contour_visible=vis, image_size=SIZE, output_size=SIZE,
      **kwargs))


def test_default_rendering_unchanged():
  # Sums of the renderings before `overlap` existed (commit 88d487a).
  rng = np.random.default_rng(7)
  joints, contour = rng.uniform(8, 56, (16, 2)), rng.uniform(8, 56, (26, 2))
  rows = np.arange(64)[:, None]
  for kwargs, total, moment in ((dict(), 1209.1491006016731, 40792.291491508484),
                                (dict(fill_limbs=True, line_width=3.0),
                                 1698.6993094682693, 55861.68166613579)):
    mask = np.asarray(_render(joints, contour, image_size=SIZE,
                                             output_size=SIZE, **kwargs), np.float64)
    assert mask.sum() == pytest.approx(total, rel=1e-6)
    assert (mask * rows).sum() == pytest.approx(moment, rel=1e-6)
    explicit = _render(joints, contour, image_size=SIZE, output_size=SIZE,
                                      overlap="none", **kwargs)
    np.testing.assert_array_equal(mask, np.asarray(explicit, np.float64))


def test_nearest_hides_the_torso_outline_under_the_arm():
  plain = _render_crossing()
  near = _render_crossing(overlap="nearest")
  inside = np.s_[37:40, 11:56]  # Inside the forearm band, 3 px from its edges.
  # Plain: both armpit-hip lines of the torso run under the forearm.
  assert plain[38, 17] == 1.0 and plain[38, 47] == 1.0
  assert near[inside].max() == 0.0
  # The forearm's own outline is intact, and so is the torso away from it.
  np.testing.assert_array_equal(near[34, 10:50], 1.0)
  np.testing.assert_array_equal(near[42, 10:57], 1.0)
  np.testing.assert_array_equal(near[:30, :32], plain[:30, :32])
  np.testing.assert_array_equal(near[44:, :40], plain[44:, :40])
  # A gap cuts the torso lines back further (rows 31-33 are within 3 px).
  gap = _render_crossing(overlap="nearest", overlap_gap=3.0)
  assert near[32, 17] == 1.0 and gap[32, 17] == 0.0
  np.testing.assert_array_equal(gap[34, 10:50], 1.0)
  # The upper arm meets the torso at the shoulder: no gap cut between them.
  assert gap[17, 48] == near[17, 48] > 0.5


def test_nearest_with_fills_suppresses_the_fill_behind():
  fill = dict(draw_contour=False, fill_limbs=True, fill_torso=True)
  near = _render_crossing(overlap="nearest", overlap_gap=3.0, **fill)
  assert near[38, 30] == 1.0 and near[25, 30] == 1.0  # Forearm, torso.
  assert near[32, 30] == 0.0  # Torso fill within the gap above the forearm.
  plain = _render_crossing(**fill)
  assert plain[32, 30] == 1.0


def test_outline_leaves_crossings_unfilled():
  plain = _render_crossing(fill_limbs=True, fill_torso=True)
  out = _render_crossing(fill_limbs=True, fill_torso=True, overlap="outline")
  assert plain[38, 30] == 1.0 and out[38, 30] == 0.0  # Forearm over the torso.
  assert out[38, 12] == 1.0 and out[25, 30] == 1.0  # Forearm alone, torso alone.
  np.testing.assert_array_equal(out[34, 10:50], 1.0)  # Outlines stay.
  # The torso, unfilled, does not count: the forearm is filled over it.
  out = _render_crossing(fill_limbs=True, overlap="outline")
  assert out[38, 30] == 1.0 and out[25, 30] == 0.0
  # Without fills 'outline' changes nothing.
  np.testing.assert_array_equal(_render_crossing(overlap="outline"), _render_crossing())


def test_overlap_batch_vmap_and_errors():
  rng = np.random.default_rng(4)
  contour = np.stack([_pose(rng)[1] for _ in range(2)])
  kwargs = dict(image_size=OUT, output_size=OUT, fill_limbs=True, fill_torso=True,
                overlap="nearest", overlap_gap=2.0)
  batch = _render(contour=contour, **kwargs)
  vmapped = jax.vmap(lambda c: _render(contour=c, **kwargs))(
      jnp.asarray(contour))
  np.testing.assert_allclose(vmapped, batch, atol=1e-6)
  np.testing.assert_allclose(batch[1], _render(contour=contour[1], **kwargs),
                             atol=1e-6)
  with pytest.raises(ValueError, match="overlap must be one of"):
    _render(contour=contour, image_size=OUT, output_size=OUT, overlap="x")
  with pytest.raises(ValueError, match="overlap_gap"):
    _render(contour=contour, image_size=OUT, output_size=OUT,
            overlap="outline", overlap_gap=1.0)


@pytest.mark.parametrize("overlap", ["nearest", "outline"])
def test_overlap_gradient_matches_finite_differences(overlap):
  rng = np.random.default_rng(5)
  with jax.enable_x64(True):
    joints, contour = (jnp.asarray(a, jnp.float64) for a in _pose(rng))
    weights = jnp.asarray(rng.uniform(0, 1, OUT))
    gap = 2.0 if overlap == "nearest" else 0.0

    @jax.jit
    def loss(c):
      mask = _render(joints, c, image_size=OUT, output_size=OUT,
                                    line_width=2.5, fill_limbs=True, fill_torso=True,
                                    overlap=overlap, overlap_gap=gap)
      return jnp.sum(mask * weights)

    grad = jax.jit(jax.grad(loss))(contour)
    assert np.isfinite(grad).all() and np.abs(grad).max() > 0
    h = 1e-5
    for idx in ((4, 0), (12, 1), (17, 1), (23, 0)):
      e = jnp.zeros_like(contour).at[idx].set(h)
      fd = (loss(contour + e) - loss(contour - e)) / (2 * h)
      np.testing.assert_allclose(grad[idx], fd, rtol=1e-4, atol=1e-6)


def test_occluded_contour_points():
  contour, vis = _crossing()
  weights = np.asarray(readability.occluded_contour_points(contour, vis))
  np.testing.assert_array_equal(weights, vis)  # Nothing lies behind a nearer limb.
  hip = C["lateral_right_hip"]  # Depth of the right thigh.
  for xy, expected in (((30, 38), 0.0),   # Inside the (nearer) forearm.
                       ((30, 34), 0.5),   # On its edge: half hidden.
                       ((52, 25), 0.0),   # Inside the left upper arm.
                       ((30, 25), 1.0)):  # Inside the torso: farther, not hidden.
    moved = contour.copy()
    moved[hip] = xy
    w = np.asarray(readability.occluded_contour_points(moved, vis))
    assert w[hip] == pytest.approx(expected, abs=1e-5), xy
    np.testing.assert_array_equal(np.delete(w, hip), np.delete(vis, hip))
  # A forearm point inside the torso stays: the forearm is in front.
  moved = contour.copy()
  moved[C["medial_left_wrist"]] = (30, 30)
  assert readability.occluded_contour_points(moved, vis)[C["medial_left_wrist"]] == 1.0
  # A hidden forearm corner: the forearm hides nothing; batches; gradients.
  moved = contour.copy()
  moved[hip] = (30, 38)
  hidden = vis.copy()
  hidden[C["lateral_left_wrist"]] = 0
  w = readability.occluded_contour_points(np.stack([moved, moved]), np.stack([vis, hidden]))
  assert w.shape == (2, kp.NUM_CONTOUR)
  assert w[0, hip] == 0.0 and w[1, hip] == 1.0
  grad = jax.grad(lambda c: readability.occluded_contour_points(c, vis, softness=4.0)[hip])(
      jnp.asarray(moved).at[hip].set((30.0, 35.0)))
  assert np.isfinite(grad).all() and grad[hip, 1] < 0  # Deeper inside: more hidden.
  with pytest.raises(ValueError, match="contour must be"):
    readability.occluded_contour_points(contour[:5])


def test_compare_overlap_modes():
  params = phosphenes.default_params()
  params["run"]["resolution"] = [64, 64]
  params["thresholding"]["use_threshold"] = False
  x, y = phosphenes.phosphenes_by_magnification(params, 300, key=jax.random.PRNGKey(0))
  sim = phosphenes.Simulator.create(params, x, y)
  contour, vis = _crossing()
  style = phosphenes.DrawStyle(line_width=2.0, fill_limbs=True, fill_torso=True,
                               overlap="nearest", overlap_gap=3.0)
  result = readability.compare_overlap_modes(sim, contour, vis, image_size=SIZE,
                                             style=style, frames=3)
  assert list(result) == ["none", "nearest", "outline"]
  np.testing.assert_allclose(result["nearest"][0], _render_crossing(
      overlap="nearest", overlap_gap=3.0, fill_limbs=True, fill_torso=True), atol=1e-5)
  for mask, image in result.values():
    assert mask.shape == image.shape == (64, 64)
    assert image.max() > 0.05
  # 'outline' is drawn without the gap, which only 'nearest' takes.
  np.testing.assert_allclose(result["outline"][0], _render_crossing(
      overlap="outline", fill_limbs=True, fill_torso=True), atol=1e-5)


def test_draw_style_is_a_hashable_static_and_checks_itself():
  assert phosphenes.DrawStyle(line_width=2) == phosphenes.DrawStyle(line_width=2.0)
  assert hash(phosphenes.DrawStyle(line_width=2)) == hash(phosphenes.DrawStyle())
  with pytest.raises(ValueError, match="overlap must be one of"):
    phosphenes.DrawStyle(overlap="x")
  with pytest.raises(ValueError, match="needs overlap='nearest'"):
    phosphenes.DrawStyle(fill_limbs=True).replace(overlap_gap=1.0)
  with pytest.raises(ValueError, match="render_pose takes"):
    phosphenes.render_pose({"joint": np.zeros((16, 2))}, image_size=OUT, output_size=OUT)
  # One compilation serves equal styles built apart (a static argument).
  joints = np.random.default_rng(6).uniform(8, 40, (16, 2))
  render = lambda style: phosphenes.render_pose({"joints": joints}, image_size=OUT,
                                                output_size=OUT, style=style)
  render(phosphenes.DrawStyle(line_width=3))
  before = phosphenes.pose._render_batch._cache_size()
  render(phosphenes.DrawStyle(line_width=3.0))
  assert phosphenes.pose._render_batch._cache_size() == before


@pytest.mark.parametrize("method", ["center", "receptive_fields"])
def test_pose_stimulus_draws_only_the_pixels_read(method):
  params = phosphenes.default_params()
  params["run"]["resolution"] = [64, 48]  # W, H.
  params["sampling"]["sampling_method"] = method
  x, y = phosphenes.phosphenes_by_magnification(params, 300, key=jax.random.PRNGKey(1))
  sim = phosphenes.Simulator.create(params, x, y)
  pixels = sim.sample_pixels()
  assert pixels.rows.shape[0] < 48 * 64  # Fewer pixels drawn than the whole mask.
  rng = np.random.default_rng(8)
  points = {"joints": rng.uniform(8, 120, (2, 16, 2)), "contour": rng.uniform(8, 120, (2, 26, 2))}
  style = phosphenes.DrawStyle(line_width=3.0, fill_limbs=True)
  whole = sim.sample_stimulus(phosphenes.render_pose(
      points, image_size=(128, 128), output_size=sim.resolution, style=style), rescale=True)
  fast = jax.jit(lambda p, px: phosphenes.pose_stimulus(p, px, image_size=(128, 128),
                                                        style=style))(points, pixels)
  assert fast.shape == (2, sim.num_phosphenes) and float(whole.max()) > 0
  np.testing.assert_allclose(fast, whole, atol=1e-9)
