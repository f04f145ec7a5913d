"""Tests of triplet_pose.transforms: affines of points and images agree."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from triplet_pose import keypoints as kp
from triplet_pose import transforms as T


def _blob_image(height, width, center, *, radius=3.0, channels=3):
  yy, xx = np.mgrid[:height, :width]
  d2 = (xx - center[0]) ** 2 + (yy - center[1]) ** 2
  blob = np.exp(-d2 / (2 * radius ** 2))
  return np.repeat((blob * 255).astype(np.uint8)[..., None], channels, axis=-1)


def _centroid(image):
  w = image.astype(np.float64)
  if w.ndim == 3:
    w = w.mean(-1)
  w = np.where(w > 0.1 * w.max(), w, 0)
  yy, xx = np.mgrid[:w.shape[0], :w.shape[1]]
  return np.array([(w * xx).sum(), (w * yy).sum()]) / w.sum()


def test_center_scale_affine_maps_centre_and_side():
  a = T.center_scale_affine(np.array([100.0, 50.0]), 200.0, 256)
  np.testing.assert_allclose(T.apply_affine(a, np.array([[100.0, 50.0]])), [[127.5, 127.5]])
  # The box edges (centre +- side / 2) land on the crop's outer pixel edges.
  edges = T.apply_affine(a, np.array([[0.0, -50.0], [200.0, 150.0]]))
  np.testing.assert_allclose(edges, [[-0.5, -0.5], [255.5, 255.5]])


def test_box_affine_fits_longer_side_and_centres_shorter():
  box = np.array([10, 20, 109, 69])  # 100 x 50 pixels
  a = T.box_affine(box, 256)
  corners = T.apply_affine(a, np.array([[9.5, 19.5], [109.5, 69.5]]))
  np.testing.assert_allclose(corners[:, 0], [-0.5, 255.5])
  np.testing.assert_allclose(corners[:, 1], [64 - 0.5, 192 - 0.5])


@pytest.mark.parametrize("xp", [np, jnp])
def test_compose_invert_apply(xp):
  a = T.rotation_affine(angle=xp.float32(0.4), scale=xp.float32(1.3), center=xp.array([5.0, 7.0]),
                        translation=xp.array([2.0, -3.0]))
  b = T.center_scale_affine(xp.array([10.0, 20.0]), xp.float32(40.0), 64)
  pts = xp.array([[1.0, 2.0], [30.0, -4.0], [0.0, 0.0]])
  ab = T.compose_affines(a, b)
  np.testing.assert_allclose(T.apply_affine(ab, pts), T.apply_affine(a, T.apply_affine(b, pts)),
                             atol=1e-4)
  np.testing.assert_allclose(T.apply_affine(T.invert_affine(ab), T.apply_affine(ab, pts)), pts,
                             atol=1e-4)
  # Rotation about `center` keeps it, up to the translation.
  np.testing.assert_allclose(T.apply_affine(a, xp.array([[5.0, 7.0]])), [[7.0, 4.0]], atol=1e-5)
  assert isinstance(T.apply_affine(ab, pts), np.ndarray if xp is np else jax.Array)


def test_flip_twice_is_identity_for_points_and_labels():
  rng = np.random.default_rng(0)
  joints = rng.uniform(0, 255, (kp.NUM_JOINTS, 2))
  f = T.flip_affine(256)
  np.testing.assert_allclose(T.apply_affine(T.compose_affines(f, f), joints), joints)
  once = kp.JOINTS.flip(joints, 256)
  np.testing.assert_allclose(kp.JOINTS.flip(once, 256), joints)
  np.testing.assert_allclose(once[kp.JOINT_INDEX["l_wrist"], 0],
                             255 - joints[kp.JOINT_INDEX["r_wrist"], 0])
  contour = rng.uniform(0, 255, (kp.NUM_CONTOUR, 2))
  np.testing.assert_allclose(
      kp.CONTOUR.flip(kp.CONTOUR.flip(contour, 256), 256),
      contour)


def test_in_frame():
  pts = np.array([[0, 0], [255, 255], [-0.1, 5], [5, 255.5], [np.nan, 3]], float)
  np.testing.assert_array_equal(T.in_frame(pts, height=256, width=256),
                                [True, True, False, False, False])


@pytest.mark.parametrize("angle,scale", [(0.0, 1.0), (0.6, 1.3), (-0.9, 0.7)])
def test_warps_move_pixels_like_points(angle, scale):
  center = np.array([70.3, 41.6])
  image = _blob_image(96, 128, center)
  a = T.rotation_affine(angle=angle, scale=scale, center=np.array([63.5, 47.5]),
                        translation=np.array([4.0, -6.0]))
  target = T.apply_affine(a, center[None])[0]
  host = T.warp_image_np(image, a, out_size=(96, 128))
  np.testing.assert_allclose(_centroid(host), target, atol=0.3)
  dev = np.asarray(T.warp_image(jnp.asarray(image, jnp.float32), jnp.asarray(a, jnp.float32),
                                out_height=96, out_width=128))
  np.testing.assert_allclose(_centroid(dev), target, atol=0.3)


def test_warp_np_strong_downscale_is_aligned():
  # A 1200-pixel box to 64 pixels takes the reduce-then-bilinear path.
  center = np.array([601.0, 333.0])
  image = _blob_image(700, 1300, center, radius=40)
  a = T.center_scale_affine(np.array([580.0, 350.0]), 1200.0, 64)
  out = T.warp_image_np(image, a, out_size=64)
  np.testing.assert_allclose(_centroid(out), T.apply_affine(a, center[None])[0], atol=0.3)


def test_warp_np_source_box_fills_outside():
  image = np.full((100, 200, 3), 90, np.uint8)
  box = (50, 10, 149, 59)  # 100 x 50: the crop is white above and below it
  out = T.warp_image_np(image, T.box_affine(np.array(box), 64), out_size=64,
                        fill=(255, 255, 255), source_box=box)
  assert (out[:14] == 255).all() and (out[-14:] == 255).all()
  assert (out[20:44] == 90).all()


def test_warp_jax_fill_and_jit():
  image = jnp.ones((8, 8, 3))
  shift = jnp.asarray(T.scale_translate_affine(np.ones(2), np.array([4.0, 0.0])), jnp.float32)
  warp = jax.jit(lambda im, a: T.warp_image(im, a, out_height=8, out_width=8, fill=0.25))
  out = warp(image, shift)
  np.testing.assert_allclose(out[:, :4], 0.25)
  np.testing.assert_allclose(out[:, 4:], 1.0)


def _person(rng, height, width):
  from triplet_pose.data.mpii_trb import annotations  # pylint: disable=g-import-not-at-top
  joints = rng.uniform([0.2 * width, 0.1 * height], [0.6 * width, 0.9 * height], (16, 2))
  return annotations.Person(
      image="x.jpg", person_index=0, joints=joints, joints_visible=np.ones(16, np.float32),
      center=joints.mean(0), scale=float(np.ptp(joints[:, 1])) / 200, head_size=60.0,
      split="validation", source="test")


@pytest.mark.parametrize("crop", ["mpii", "thesis"])
def test_stored_crop_maps_back_to_the_original_within_1e2_px(crop):
  """Keypoints of a stored example, through its float32 `crop_to_original`.

  Both the keypoints and the affine are stored in float32; on a 1280-pixel
  image the round trip is exact to ~1e-4 px, so 1e-2 px still passes and a
  half-pixel convention slip between the crop and its stored inverse fails
  (0.5 px, which a 0.5 px tolerance would let through).
  """
  from triplet_pose.data.mpii_trb import crops  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(3)
  height, width = 720, 1280
  person = _person(rng, height, width)
  example = crops.make_example(np.zeros((height, width, 3), np.uint8), person, None,
                               crop=crop)
  assert example["joints"].dtype == example["crop_to_original"].dtype == np.float32
  back = T.apply_affine(example["crop_to_original"].astype(np.float64),
                       example["joints"].astype(np.float64))
  error = np.abs(back - person.joints).max()
  assert error < 1e-2, error
  assert error > 0  # float32 storage does round: the tolerance is not idle.
