"""Tests of the on-device augmentation: keypoints stay on the image content."""

import jax
import jax.numpy as jnp
import numpy as np

from triplet_pose import config as config_lib
from triplet_pose import heatmaps
from triplet_pose import keypoints as kp
from triplet_pose import transforms
from triplet_pose.data import augment

SIZE = 96


def _config(**overrides):
  c = config_lib.augment_config()
  c.enabled = True
  for k, v in overrides.items():
    setattr(c, k, v)
  return c


def _batch(batch_size=4, seed=0, size=SIZE):
  # Tests share shapes and configs where they can: each new combination
  # costs a compilation.
  rng = np.random.default_rng(seed)
  return dict(
      image=jnp.asarray(rng.integers(0, 256, (batch_size, size, size, 3)), jnp.uint8),
      joints=jnp.asarray(rng.uniform(0.3 * size, 0.7 * size, (batch_size, kp.NUM_JOINTS, 2)),
                         jnp.float32),
      joints_visible=jnp.asarray(rng.uniform(size=(batch_size, kp.NUM_JOINTS)) > 0.2, jnp.float32),
      contour=jnp.asarray(rng.uniform(0.3 * size, 0.7 * size, (batch_size, kp.NUM_CONTOUR, 2)),
                          jnp.float32),
      contour_visible=jnp.ones((batch_size, kp.NUM_CONTOUR)),
      head_size=jnp.full((batch_size,), 10.0),
      crop_to_original=jnp.asarray(
          np.tile(np.array([[2.0, 0, 30], [0, 2.0, 40]]), (batch_size, 1, 1)), jnp.float32),
      valid=jnp.ones((batch_size,), bool),
  )


def test_keypoints_stay_on_rendered_dots():
  """Each joint drawn as a dot in its own channel; augment; decode the dots."""
  batch = _batch(seed=1)
  batch["joints_visible"] = jnp.ones_like(batch["joints_visible"])
  dots = heatmaps.render(batch["joints"], None, height=SIZE, width=SIZE, kernel="gaussian",
                         sigma=SIZE / 64 * 1.5)  # (B, H, W, 16), one dot per joint
  batch["image"] = dots
  config = _config(color_jitter=0.0, flip_probability=0.5, translation_fraction=0.05)
  out = jax.jit(lambda b, k: augment.augment_batch(b, k, config))(batch, jax.random.key(3))
  decoded, confidence = heatmaps.decode(out["image"])  # channel c = old joint c
  # After a flip, new joint i is old joint perm[i]: its dot is channel perm[i].
  perm = np.asarray(kp.JOINT_FLIP_PERMUTATION)
  was_flipped = []
  for b in range(4):
    direct = np.abs(decoded[b] - out["joints"][b]).max()
    permuted = np.abs(decoded[b][perm] - out["joints"][b]).max()
    was_flipped.append(permuted < direct)
    ok = out["joints_visible"][b] > 0
    dots = decoded[b][perm] if was_flipped[-1] else decoded[b]
    err = np.linalg.norm(dots - out["joints"][b], axis=-1)
    assert np.all(err[np.asarray(ok)] < 1.0), (b, err)
  assert 0 < sum(was_flipped) < 4  # both cases were exercised (seeded)


def test_flip_twice_is_identity():
  batch = _batch()
  config = _config(rotation_degrees=0.0, scale_range=(1.0, 1.0), translation_fraction=0.0,
                   flip_probability=1.0, color_jitter=0.0)
  once = augment.augment_batch(batch, jax.random.key(0), config)
  twice = augment.augment_batch(once, jax.random.key(1), config)
  np.testing.assert_allclose(twice["image"], batch["image"] / 255.0, atol=1e-6)
  np.testing.assert_allclose(twice["joints"], batch["joints"], atol=1e-4)
  np.testing.assert_array_equal(twice["joints_visible"], batch["joints_visible"])
  np.testing.assert_allclose(twice["contour"], batch["contour"], atol=1e-4)
  np.testing.assert_allclose(twice["crop_to_original"], batch["crop_to_original"], atol=1e-4)
  # Once: left and right swapped, x mirrored.
  r, l = kp.JOINT_INDEX["r_wrist"], kp.JOINT_INDEX["l_wrist"]
  np.testing.assert_allclose(once["joints"][:, l, 0], SIZE - 1 - batch["joints"][:, r, 0],
                             atol=1e-4)
  np.testing.assert_array_equal(once["joints_visible"][:, l], batch["joints_visible"][:, r])


def test_keypoints_leaving_the_frame_become_invisible():
  batch = _batch()
  batch["joints"] = batch["joints"].at[:, 0].set(jnp.array([2.0, 2.0]))  # near the corner
  batch["joints_visible"] = jnp.ones_like(batch["joints_visible"])
  out = augment.augment_batch(batch, jax.random.key(7), _config())
  inside = np.asarray(transforms.in_frame(out["joints"], height=SIZE, width=SIZE))
  np.testing.assert_array_equal(np.asarray(out["joints_visible"]) > 0, inside)
  assert not inside[:, 0].all()  # some corner joints left the frame


def test_crop_to_original_still_maps_to_the_original():
  batch = _batch()
  out = augment.augment_batch(batch, jax.random.key(2), _config())
  before = transforms.apply_affine(batch["crop_to_original"], batch["joints"])
  after = transforms.apply_affine(out["crop_to_original"], out["joints"])
  perm = np.asarray(kp.JOINT_FLIP_PERMUTATION)
  for b in range(4):
    direct = np.abs(after[b] - before[b]).max()
    flipped = np.abs(after[b] - before[b][perm]).max()
    assert min(direct, flipped) < 1e-2, (direct, flipped)


def test_image_float_output_and_randomness():
  batch = _batch()
  config = _config()
  a = augment.augment_batch(batch, jax.random.key(0), config)
  b = augment.augment_batch(batch, jax.random.key(0), config)
  c = augment.augment_batch(batch, jax.random.key(1), config)
  assert a["image"].dtype == jnp.float32
  assert 0.0 <= float(a["image"].min()) and float(a["image"].max()) <= 1.0
  np.testing.assert_array_equal(a["joints"], b["joints"])
  assert not np.allclose(a["joints"], c["joints"])
  assert not np.allclose(a["joints"][0], a["joints"][1] - batch["joints"][1] + batch["joints"][0])
  np.testing.assert_array_equal(a["valid"], batch["valid"])
  scale = np.asarray(a["head_size"]) / 10.0
  lo, hi = config.scale_range
  assert np.all((scale >= lo - 1e-6) & (scale <= hi + 1e-6))


def test_disabled_only_converts_the_image():
  batch = _batch()
  config = _config()
  config.enabled = False
  out = augment.augment_batch(batch, jax.random.key(0), config)
  np.testing.assert_allclose(out["image"], batch["image"] / 255.0, atol=1e-6)
  np.testing.assert_array_equal(out["joints"], batch["joints"])


def test_accepts_partial_batches_and_runs_inside_jit():
  batch = _batch()
  del batch["contour"], batch["contour_visible"], batch["crop_to_original"]
  config = _config()
  out = jax.jit(lambda b, k: augment.augment_batch(b, k, config))(batch, jax.random.key(0))
  assert out["joints"].shape == batch["joints"].shape
  assert "contour" not in out


def test_flip_only_shortcut_equals_the_warp(monkeypatch):
  """With no rotation, scale or shift the image is mirrored without the warp's
  gathers (augment.is_flip_only): the same pixels, keypoints and labels."""
  batch = {k: v for k, v in _batch(seed=5).items() if k in augment.GEOMETRIC_KEYS}
  config = _config(rotation_degrees=0.0, scale_range=(1.0, 1.0), translation_fraction=0.0,
                   flip_probability=0.5, color_jitter=0.1)
  assert augment.is_flip_only(config)
  assert not augment.is_flip_only(_config(translation_fraction=0.01))
  keys = jax.random.split(jax.random.key(11), 4)

  def run():
    fn = jax.vmap(lambda e, k: augment.augment_example(e, k, config))
    return jax.jit(fn)(batch, keys)

  fast = run()
  monkeypatch.setattr(augment, "is_flip_only", lambda c: False)
  warped = run()
  flipped = [bool(np.any(fast["joints"][b] != batch["joints"][b])) for b in range(4)]
  assert 0 < sum(flipped) < 4  # both cases were exercised (seeded)
  for key in fast:
    np.testing.assert_allclose(fast[key], warped[key], atol=1e-6, err_msg=key)
