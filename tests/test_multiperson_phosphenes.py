"""Phosphene scenes: every person drawn, nearer ones hiding farther ones."""

import jax.numpy as jnp
import numpy as np
import pytest

from triplet_pose.data.synthetic_scenes import scenes
from triplet_pose.phosphenes import pose as pose_lib
from triplet_pose.phosphenes import scene

SIZE = (128, 128)
CONTOUR = pose_lib.DrawStyle(draw_joints=False, draw_skeleton=False, draw_contour=True)


@pytest.fixture(scope="module")
def two_people():
  """Persons 0 (near) and 1 (farther): the same figure, 14 px apart."""
  s = scenes.make_scene(0, 0)
  joints = np.stack([s["joints"][0], s["joints"][0] + (14.0, 0.0)])
  contour = np.stack([s["contour"][0], s["contour"][0] + (14.0, 0.0)])
  return {"joints": jnp.asarray(joints), "contour": jnp.asarray(contour)}


def _alone(points, i, style=CONTOUR):
  return np.asarray(pose_lib.render_pose({k: v[i] for k, v in points.items()},
                                         image_size=(256, 256), output_size=SIZE, style=style))


def _scene(points, **kwargs):
  return np.asarray(scene.render_scene(points, image_size=(256, 256), output_size=SIZE,
                                       style=CONTOUR, **kwargs))


def test_the_farther_contour_hides_behind_the_nearer_body(two_people):
  mask = _scene(two_people)
  near, far = _alone(two_people, 0), _alone(two_people, 1)
  body = np.asarray(scene._bodies({k: v[:1] for k, v in two_people.items()}, None,  # pylint: disable=protected-access
                                  image_size=(256, 256), output_size=SIZE,
                                  style=scene.SceneStyle()))[0]
  inside, outside = body > 0.99, body < 0.01
  assert (far[inside] > 0.5).sum() > 20  # there is something to hide
  np.testing.assert_allclose(mask[inside], near[inside], atol=1e-6)
  np.testing.assert_allclose(mask[outside], far[outside], atol=1e-6)
  # The other depth order hides the other person.
  swapped = _scene(two_people, depth=jnp.array([1, 0]))
  assert (swapped[inside] > far[inside] - 1e-6).all()
  assert np.abs(swapped - mask).max() > 0.5


def test_gap_and_depth_brightness_keep_people_apart(two_people):
  plain = _scene(two_people)
  gap = _scene(two_people, scene_style=scene.SceneStyle(gap=3.0))
  far = _alone(two_people, 1)
  assert gap.sum() < plain.sum() and (gap <= plain + 1e-6).all()
  dim = _scene(two_people, scene_style=scene.SceneStyle(depth_brightness=0.5))
  near = _alone(two_people, 0)
  only_far = (far > 0.5) & (near < 0.01) & (plain > 0.5)
  np.testing.assert_allclose(dim[only_far], 0.5 * plain[only_far], atol=1e-6)


def test_invalid_persons_draw_and_hide_nothing(two_people):
  mask = _scene(two_people, persons_valid=jnp.array([False, True]))
  np.testing.assert_allclose(mask, _alone(two_people, 1), atol=1e-6)


def test_skeleton_only_scenes_hide_behind_a_wide_skeleton(two_people):
  points = {"joints": two_people["joints"]}
  style = pose_lib.DrawStyle(draw_contour=False)
  mask = np.asarray(scene.render_scene(points, image_size=(256, 256), output_size=SIZE,
                                       style=style))
  far = _alone(points, 1, style)
  assert mask.max() <= 1.0 and mask.sum() < _alone(points, 0, style).sum() + far.sum()


def test_bad_style_is_one_clear_error():
  with pytest.raises(ValueError, match="depth_brightness"):
    scene.SceneStyle(depth_brightness=0.0)


def test_every_grouped_person_gets_26_contour_points_from_its_crop():
  import jax  # pylint: disable=g-import-not-at-top
  from configs import tiny  # pylint: disable=g-import-not-at-top
  from triplet_pose import inference  # pylint: disable=g-import-not-at-top
  from triplet_pose import top_down  # pylint: disable=g-import-not-at-top
  from triplet_pose import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  s = scenes.make_scene(0, 1)
  persons = np.concatenate([s["joints"], np.ones(s["joints"].shape[:2] + (1,))], -1)
  persons[0, 3] = np.nan  # a joint grouping did not find
  crops, affines = top_down.person_crops(s["image"], persons, size=64)
  assert crops.shape == (len(persons), 64, 64, 3)
  inside = top_down.transforms.apply_affine(affines, persons[..., :2])
  found = np.isfinite(persons).all(-1)
  assert inside[found].min() >= 0 and inside[found].max() <= 63
  config = tiny.get_config("target=contour")
  model = workdir_lib.create_model(config)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 19)), train=False)
  loaded = workdir_lib.LoadedModel(config, model, variables, "", 0)
  fn = inference.make_inference_fn(inference.PoseModels(triplet=loaded), flip_test=False,
                                   ground_truth_joints=True)
  contour = top_down.contours_per_person(fn, {"triplet": variables}, s["image"],
                                               persons, size=64)
  assert contour.shape == (len(persons), 26, 3) and np.isfinite(contour).all()
  for p in range(len(persons)):  # every point lies in that person's crop
    back = top_down.transforms.apply_affine(affines[p], contour[p, :, :2])
    assert back.min() >= -1 and back.max() <= 64


def test_scene_stimulus_draws_only_the_pixels_read(two_people):
  import jax  # pylint: disable=g-import-not-at-top
  from triplet_pose import phosphenes  # pylint: disable=g-import-not-at-top
  params = phosphenes.default_params()
  params["run"]["resolution"] = [64, 64]
  x, y = phosphenes.phosphenes_by_magnification(params, 300, key=jax.random.PRNGKey(1))
  sim = phosphenes.Simulator.create(params, x, y)
  pixels = sim.sample_pixels()
  kwargs = dict(image_size=(256, 256), style=CONTOUR, depth=jnp.array([1, 0]),
                scene_style=scene.SceneStyle(gap=2.0, depth_brightness=0.7))
  whole = sim.sample_stimulus(scene.render_scene(two_people, output_size=sim.resolution,
                                                 **kwargs), rescale=True)
  fast = scene.scene_stimulus(two_people, pixels, **kwargs)
  assert float(whole.max()) > 0
  np.testing.assert_allclose(fast, whole, atol=1e-6)
