"""Augmentation of scene batches: one affine per image moves every person."""

import functools
import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from configs import scenes as scenes_config
from triplet_pose import config as config_lib
from triplet_pose import heatmaps
from triplet_pose import keypoints as kp
from triplet_pose import train
from triplet_pose import transforms
from triplet_pose.data import scene_augment
from triplet_pose.data import scene_features as sf
from triplet_pose.data import scene_pipeline
from triplet_pose.data.synthetic_scenes import scenes
from triplet_pose.models import associative_embedding as ae

SIZE, MAX_PERSONS = 64, 4


def _config(**overrides):
  c = config_lib.augment_config()
  c.update(enabled=True, **overrides)
  return c


IDENTITY = dict(rotation_degrees=0.0, scale_range=(1.0, 1.0), translation_fraction=0.0,
                color_jitter=0.0)


@pytest.fixture(scope="module")
def batch():
  """Four synthetic scenes through the scene pipeline's decoding (64 px, 4 persons)."""
  examples = []
  for i in range(4):
    scene = scenes.make_scene(3, i)
    encoded = io.BytesIO()
    Image.fromarray(scene["image"]).save(encoded, format="PNG")
    examples.append(scene_pipeline.decode_scene({**scene, "image": encoded.getvalue()},
                                                image_size=SIZE, max_persons=MAX_PERSONS))
  out = {k: np.stack([e[k] for e in examples]) for k in scene_pipeline.DTYPES}
  out["valid"] = np.ones(4, bool)
  assert (~out["persons_valid"]).any() and (out["persons_valid"].sum(1) > 1).any()
  return out


def test_the_identity_leaves_the_batch_unchanged(batch):
  out = scene_augment.augment_batch(batch, jax.random.key(0),
                                    _config(flip_probability=0.0, **IDENTITY))
  assert out.keys() == batch.keys()
  # The image only becomes float (XLA may round its division differently).
  np.testing.assert_allclose(out["image"], batch["image"] / 255, atol=1e-6)
  for key in batch:
    if key != "image":
      np.testing.assert_array_equal(out[key], batch[key], err_msg=key)
      assert out[key].dtype == batch[key].dtype, key


def test_a_flip_mirrors_each_person_and_swaps_its_sides(batch):
  out = jax.device_get(scene_augment.augment_batch(batch, jax.random.key(0),
                                                   _config(flip_probability=1.0, **IDENTITY)))
  np.testing.assert_allclose(out["image"], batch["image"][:, :, ::-1] / 255, atol=1e-6)
  # A known scene: its first person's left wrist is where its right wrist was, mirrored.
  left, right = kp.JOINT_INDEX["l_wrist"], kp.JOINT_INDEX["r_wrist"]
  x, y = batch["joints"][0, 0, right]
  np.testing.assert_allclose(out["joints"][0, 0, left], [SIZE - 1 - x, y], atol=1e-5)
  assert out["joints_visible"][0, 0, left] == batch["joints_visible"][0, 0, right]
  # Every real person, each by itself (persons keep their order).
  real = batch["persons_valid"]
  perm = list(kp.JOINT_FLIP_PERMUTATION)
  np.testing.assert_allclose(out["joints"][real], kp.JOINTS.flip(batch["joints"][real], SIZE),
                             atol=1e-4)
  np.testing.assert_allclose(out["contour"][real],
                             kp.CONTOUR.flip(batch["contour"][real], SIZE), atol=1e-4)
  for key in ("joints_visible", "joints_occlusion"):
    np.testing.assert_array_equal(out[key][real], batch[key][real][:, perm], err_msg=key)
  x0, y0, x1, y1 = np.moveaxis(batch["boxes"][real], -1, 0)
  np.testing.assert_allclose(out["boxes"][real],
                             np.stack([SIZE - 1 - x1, y0, SIZE - 1 - x0, y1], -1), atol=1e-4)
  np.testing.assert_array_equal(out["head_size"], batch["head_size"])


def test_points_moved_out_of_the_frame_are_out_of_frame(batch):
  # Half a frame to the right, 1.5x about the centre: the right part of the
  # scene leaves, the head sizes grow with it.
  centre = jnp.full(2, (SIZE - 1) / 2, jnp.float32)
  affine = transforms.rotation_affine(angle=jnp.float32(0), scale=jnp.float32(1.5),
                                      center=centre, translation=jnp.array([SIZE / 2, 0.0]))
  move = scene_augment.augment.Move(affine, jnp.bool_(False), jnp.float32(1.5))
  transform = jax.jit(functools.partial(scene_augment.transform_scene, config=_config()))
  left_the_frame = kept = 0
  for i in range(len(batch["image"])):
    example = {k: jnp.asarray(v[i]) for k, v in batch.items()}
    out = jax.device_get(transform(example, move, color_rng=jax.random.key(i)))
    real = batch["persons_valid"][i]
    moved = 1.5 * (batch["joints"][i] - (SIZE - 1) / 2) + (SIZE - 1) / 2 + [SIZE / 2, 0]
    inside = np.asarray(transforms.in_frame(moved, height=SIZE, width=SIZE))
    annotated = (batch["joints_visible"][i] > 0) & real[:, None]
    gone = annotated & ~inside
    left_the_frame += gone.sum()
    kept += (annotated & inside).sum()
    np.testing.assert_array_equal(out["joints_visible"][real], (annotated & inside)[real])
    np.testing.assert_array_equal(out["joints_occlusion"][gone], sf.OUT_OF_FRAME)
    np.testing.assert_array_equal(out["joints_occlusion"][~gone],
                                  batch["joints_occlusion"][i][~gone])
    np.testing.assert_allclose(out["joints"][annotated], moved[annotated], atol=1e-4)
    np.testing.assert_allclose(out["head_size"][real], 1.5 * batch["head_size"][i][real],
                               rtol=1e-6)
    contour = 1.5 * (batch["contour"][i] - (SIZE - 1) / 2) + (SIZE - 1) / 2 + [SIZE / 2, 0]
    contour_in = np.asarray(transforms.in_frame(contour, height=SIZE, width=SIZE))
    np.testing.assert_array_equal(out["contour_visible"][real],
                                  ((batch["contour_visible"][i] > 0) & contour_in)[real])
  assert left_the_frame > 0 and kept > 0


def test_padded_persons_stay_padded(batch):
  out = jax.device_get(scene_augment.augment_batch(batch, jax.random.key(1), _config()))
  padded = ~batch["persons_valid"]
  np.testing.assert_array_equal(out["persons_valid"], batch["persons_valid"])
  for key in scene_augment.PERSON_KEYS:
    np.testing.assert_array_equal(out[key][padded], batch[key][padded], err_msg=key)
    assert not np.array_equal(out[key], batch[key]), key  # the real persons did move
  assert not out["joints_visible"][padded].any()


def test_targets_of_the_augmented_batch_peak_at_the_moved_joints(batch):
  # The image is a dot at every annotated joint of every real person, so the
  # augmented image shows where the content went; the augmented joints must
  # lie on its dots, and the heatmap targets and tag cells on the joints.
  dots = heatmaps.render(jnp.asarray(batch["joints"]), ae.person_weights(batch), height=SIZE,
                         kernel="gaussian", sigma=1.5)  # (B, P, H, W, K)
  dotted = {**batch, "image": jnp.repeat(dots.max(axis=(1, 4))[..., None], 3, axis=-1)}
  augment = jax.jit(functools.partial(scene_augment.augment_batch, config=_config(
      color_jitter=0.0)))
  flips = 0
  for seed in range(3):
    out = jax.device_get(augment(dotted, jax.random.key(seed)))
    flips += int((np.linalg.det(out["crop_to_original"][:, :, :2]) < 0).sum())
    annotated = np.asarray(ae.person_weights(out)) > 0  # (B, P, K)
    assert annotated.sum() > 0.5 * (np.asarray(ae.person_weights(batch)) > 0).sum()
    b, p, k = np.nonzero(annotated)
    xy = np.round(out["joints"][b, p, k]).astype(int)
    np.testing.assert_array_less(0.6, out["image"][b, xy[:, 1], xy[:, 0], 0])
    target = np.asarray(ae.scene_targets(out, heatmap_size=SIZE // 4))  # (B, h, w, K)
    cells = np.asarray(ae.joint_cells(out["joints"], image_size=SIZE,
                                      heatmap_size=SIZE // 4))  # (B, P, K) flat
    # sigma 1 cell: at most half a cell off the peak in x and y.
    np.testing.assert_array_less(0.77, target.reshape(len(target), -1, kp.NUM_JOINTS)[
        b, cells[b, p, k], k])
    # ... and no peak where no moved joint is.
    coords = heatmaps.rescale_coordinates(out["joints"], SIZE, SIZE // 4)
    for i, j in {(int(i), int(j)) for i, j in zip(b, k)}:
      ys, xs = np.nonzero(target[i, ..., j] > 0.5)
      joints = coords[i][annotated[i, :, j], j]
      far = np.linalg.norm(np.stack([xs, ys], -1)[:, None] - joints[None], axis=-1).min(1)
      assert far.max() < 1.5, (i, j)
  assert flips > 0


def test_scene_train_step_runs_with_augmentation(batch):
  config = scenes_config.get_config("smoke")
  config.augment.enabled = True
  config.input.image_size, config.input.heatmap_size = SIZE, SIZE // 4
  state = train.create_train_state(config, jax.random.key(0))
  step = jax.jit(functools.partial(train.train_step, config=config))
  _, metrics = step(state, {k: jnp.asarray(v) for k, v in batch.items()}, jax.random.key(1))
  assert np.isfinite(float(metrics["loss"]))


def test_scenes_config_augments_the_full_recipe_only():
  assert scenes_config.get_config().augment.enabled
  assert not scenes_config.get_config("quick").augment.enabled
  assert not scenes_config.get_config("smoke").augment.enabled
