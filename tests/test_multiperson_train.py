"""The associative-embedding model: shapes, its loss, and `configs/scenes.py`
trained end to end on tiny scenes, resumed, and evaluated with multi-person AP."""

import dataclasses
import functools
import json
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import scenes as scenes_config
from triplet_pose import checkpoint_recovery
from triplet_pose import config_files
from triplet_pose import grouping
from triplet_pose import heatmaps
from triplet_pose import inference
from triplet_pose import keypoints as kp
from triplet_pose import phosphenes
from triplet_pose import prediction
from triplet_pose import train
from triplet_pose import viz
from triplet_pose import workdir as workdir_lib
from triplet_pose.models import associative_embedding as ae
from triplet_pose.prediction import scenes
from triplet_pose.viz import scenes as scene_viz


def _smoke(tmp_path, **overrides):
  config = scenes_config.get_config("smoke")
  config.input.data_dir = str(tmp_path / "tfds")
  config.update(overrides)
  return config


def test_model_outputs_heatmaps_and_tags_per_stack(tmp_path):
  config = _smoke(tmp_path)
  model = workdir_lib.create_model(config)
  images = jnp.zeros((2, 64, 64, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), images, train=False))
  out = jax.eval_shape(lambda v: model.apply(v, images, train=False), variables)
  assert out["joints"].shape == out["tags"].shape == (2, 2, 16, 16, 16)
  config.tags.dim = 3  # a 3-d tag per joint: 16 + 48 outputs per stack
  model = workdir_lib.create_model(config)
  wide = jax.eval_shape(lambda: model.init(jax.random.key(0), images, train=False))
  out = jax.eval_shape(lambda v: model.apply(v, images, train=False), wide)
  assert out["joints"].shape == (2, 2, 16, 16, 16)
  assert out["tags"].shape == (2, 2, 16, 16, 16, 3)
  size = lambda v: sum(x.size for x in jax.tree.leaves(v["params"]))  # noqa: E731
  assert size(wide) > size(variables)


def test_flip_test_of_a_mirrored_image_is_the_mirrored_flip_test(tmp_path):
  """The flip test's heatmaps and tags of a mirrored image are those of the
  image mirrored back (joints swapped, the tag halves exchanged), for any
  model; the plain maps of this random model are not."""
  config = _smoke(tmp_path)
  config.tags.dim = 2
  model = workdir_lib.create_model(config)
  images = jax.random.uniform(jax.random.key(1), (2, 64, 64, 3))
  variables = model.init(jax.random.key(0), images, train=False)
  apply = functools.partial(model.apply, train=False)
  heat, tags = inference.predict_scene_maps(apply, variables, images, flip_test=True)
  heat_m, tags_m = inference.predict_scene_maps(apply, variables, images[:, :, ::-1],
                                                flip_test=True)
  assert heat.shape == (2, 16, 16, 16) and tags.shape == (2, 16, 16, 16, 4)
  np.testing.assert_allclose(heat_m, inference.unflip_heatmaps(heat, kp.JOINTS), atol=1e-6)
  perm = np.asarray(kp.JOINTS.flip_permutation)
  mirrored = np.asarray(tags)[:, :, ::-1][..., perm, :][..., [2, 3, 0, 1]]
  np.testing.assert_allclose(tags_m, mirrored, atol=1e-6)
  plain, plain_tags = inference.predict_scene_maps(apply, variables, images, flip_test=False)
  plain_m, _ = inference.predict_scene_maps(apply, variables, images[:, :, ::-1],
                                            flip_test=False)
  assert plain_tags.shape == (2, 16, 16, 16, 2)
  assert np.abs(plain_m - inference.unflip_heatmaps(plain, kp.JOINTS)).max() > 1e-3


def _blob_model(variables, x):
  """A stand-in model: every joint's heatmap is the image's first channel
  averaged over 4 x 4 pixels (the model's stride), the tag its second."""
  b, h, w, _ = x.shape
  pooled = x.reshape(b, h // 4, 4, w // 4, 4, -1).mean(axis=(2, 4))
  maps = jnp.repeat(pooled[..., :2, None], 16, axis=-1)[:, None]  # (B, 1, h, w, 2, K)
  return {"joints": maps[..., 0, :], "tags": maps[..., 1, :]}


@pytest.mark.parametrize("flip_test", [False, True])
def test_multi_scale_maps_stay_aligned_with_the_image(flip_test):
  """Maps of the input at 1x and 1.5x, resized to twice the plain maps'
  side: a blob's heatmap centre stays where the blob is (in input pixels),
  as in the plain maps, and the tags of the runs sit side by side."""
  y, x = np.mgrid[0:64, 0:64]
  centre = np.array([37.3, 21.6])
  blob = np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / (2 * 4.0 ** 2))
  images = jnp.asarray(np.stack([blob, 0.5 * blob, blob], -1)[None], jnp.float32)
  plain, _ = inference.predict_scene_maps(_blob_model, None, images, flip_test=flip_test)
  heat, tags = inference.predict_scene_maps(_blob_model, None, images, flip_test=flip_test,
                                            scales=(1.0, 1.5), map_scale=2.0)
  runs = 2 * (2 if flip_test else 1)
  assert heat.shape == (1, 32, 32, 16) and tags.shape == (1, 32, 32, 16, runs)
  for maps, size in ((plain, 16), (heat, 32)):
    m = np.asarray(maps[0, ..., 0])
    yy, xx = np.mgrid[0:size, 0:size]
    found = np.array([(m * xx).sum(), (m * yy).sum()]) / m.sum()
    np.testing.assert_allclose(heatmaps.rescale_coordinates(found, size, 64), centre, atol=0.3)
  # Every run sees the same blob, so its tags are the heatmap's half, / sqrt(runs).
  np.testing.assert_allclose(tags[0, ..., 0, :], np.repeat(
      0.5 * np.asarray(heat[0, ..., 0])[..., None], runs, -1) / np.sqrt(runs), atol=0.02)
  assert plain.shape == (1, 16, 16, 16)


def test_grouping_options_scales_from_json_and_bad_scales():
  assert grouping.GroupingOptions(scales=[1, 1.25]).scales == (1.0, 1.25)
  for bad in ({"scales": ()}, {"scales": (1.0, -1.0)}, {"map_scale": 0.0}):
    with pytest.raises(ValueError, match="scales must be"):
      grouping.GroupingOptions(**bad)
  for bad, says in (({"top_k": 0}, "top_k must be at least 1"),
                    ({"nms_kernel": 4}, "nms_kernel must be odd"),
                    ({"detection_threshold": -0.1}, "detection_threshold must be at least 0"),
                    ({"tag_threshold": 0.0}, "tag_threshold must be positive"),
                    ({"min_joints": 0}, "min_joints must be in 1..16"),
                    ({"min_joints": 17}, "min_joints must be in 1..16")):
    with pytest.raises(ValueError, match=says):
      grouping.GroupingOptions(**bad)


def test_scene_loss_prefers_the_true_maps():
  batch = {"image": jnp.zeros((1, 64, 64, 3)), "valid": jnp.ones(1, bool),
           "joints": jnp.asarray(np.random.default_rng(0).uniform(8, 56, (1, 2, 16, 2))),
           "joints_visible": jnp.ones((1, 2, 16)), "persons_valid": jnp.array([[True, True]])}
  config = scenes_config.get_config("smoke")
  target = ae.scene_targets(batch, heatmap_size=16)
  cells = ae.joint_cells(batch["joints"], image_size=64, heatmap_size=16)[0]  # (P, K)
  good_tags = np.zeros((16 * 16, 16), np.float32)
  for p in range(2):
    good_tags[cells[p], np.arange(16)] = 4.0 * p
  good = {"joints": target[:, None], "tags": jnp.asarray(good_tags.reshape(1, 1, 16, 16, 16))}
  bad = {"joints": jnp.zeros_like(good["joints"]), "tags": jnp.zeros_like(good["tags"])}
  loss_good, parts = ae.losses(config, good, batch, squared_error=train.squared_error)
  loss_bad, _ = ae.losses(config, bad, batch, squared_error=train.squared_error)
  # Perfect maps: no heatmap error, no pull, push exp(-|4 - 0|) only (the
  # config's Laplace kernel).
  assert config.tags.push_kernel == "laplace"
  assert float(parts["pull"][0]) < 1e-6
  np.testing.assert_allclose(parts["push"], [np.exp(-4.0)], rtol=1e-4)
  assert float(loss_good) < float(loss_bad)


def test_scenes_config_trains_resumes_and_reports_multi_person_ap(tmp_path, caplog):
  workdir = tmp_path / "work"
  with caplog.at_level(logging.INFO):
    train.train_and_evaluate(_smoke(tmp_path), workdir)
  # The evaluation's log line shows the multi-person AP, not a PCKh it lacks.
  evaluated, = [r.getMessage() for r in caplog.records if "eval_loss" in r.getMessage()]
  assert " | mAP " in evaluated and "PCKh" not in evaluated and "nan" not in evaluated
  train.train_and_evaluate(_smoke(tmp_path, num_train_steps=6, eval_every_steps=6), workdir)
  lines = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  evals = [l for l in lines if "eval/mp_map" in l]
  assert [l["step"] for l in evals] == [4, 6]  # the second run resumed at step 4
  for key in ("eval/mp_count_accuracy", "eval/mp_ceiling_map", "eval/eval_loss"):
    assert np.isfinite(evals[-1][key])
  assert workdir_lib.load_model(workdir, expect=ae.TARGET).step == 6
  # The report and the scene panel of launch.scenes, from the same workdir.
  config_options = grouping.GroupingOptions.from_config(_smoke(tmp_path))
  assert scenes.grouping_options(str(workdir)) == config_options  # nothing tuned yet
  options, tried = scenes.tune_grouping(str(workdir), num_batches=1, batch_size=4, record=True)
  assert len(tried) == (len(scenes.DETECTION_THRESHOLDS) * len(scenes.MIN_JOINTS)
                        * len(scenes.TAG_THRESHOLDS))
  chosen = (options.detection_threshold, options.min_joints, options.tag_threshold)
  assert max(t["map"] for t in tried) == next(
      t["map"] for t in tried
      if (t["detection_threshold"], t["min_joints"], t["tag_threshold"]) == chosen)
  report = scenes.evaluate_workdir(str(workdir), num_batches=1, batch_size=4, options=options,
                                   intervals=20)
  assert report["step"] == 6 and report["images"] == 4 and "ceiling_map" in report
  spans = report["intervals"]
  assert spans["resamples"] == 20 and set(spans["by_crowd"]) == set(report["by_crowd"])
  assert all(0 <= spans[k][0] <= spans[k][1] for k in ("map", "count_accuracy", "ceiling_map"))
  assert report["grouping"] == dataclasses.asdict(options)
  block = report["provenance"]
  assert block["models"]["scenes"]["step"] == 6 and block["dataset"]["examples_used"] == 4
  assert report["count_too_few"] + report["count_too_many"] == pytest.approx(
      1 - report["count_accuracy"])
  _check_tuned_grouping_is_used_for_its_step_and_maps(workdir, options, config_options)
  rows = scenes.scene_rows(str(workdir), num_images=2)
  picture = viz.figure_to_array(scene_viz.scene_panel(rows))
  assert picture.ndim == 3 and len(rows) == 2
  # More images asked for than the split's 8: its 8, none of the padding.
  assert len(scenes.scene_rows(str(workdir), num_images=10)) == 8
  for row in rows:
    assert all(p.ndim == 2 and np.isfinite(p).all() for p in row["phosphenes"].values())


def _check_tuned_grouping_is_used_for_its_step_and_maps(workdir, options, config_options):
  """What `tune_grouping(record=True)` kept: the workdir's grouping for the
  checkpoint and maps it was tuned on (`launch.scenes`, `launch.predict`)."""
  path = workdir / scenes.TUNED_FILE
  kept = json.loads(path.read_text())
  assert (kept["step"], kept["split"], kept["images"]) == (6, "train", 4)
  assert {k: kept[k] for k in scenes.TUNED} == scenes.tuned_settings(options)
  assert kept["provenance"]["models"]["scenes"]["step"] == 6
  assert scenes.grouping_options(str(workdir)) == options
  # Settings no config holds, so that where they come from shows.
  mine = {"detection_threshold": 0.35, "min_joints": 11, "tag_threshold": 1.75}
  path.write_text(json.dumps({**kept, **mine}))
  tuned = dataclasses.replace(config_options, **mine)
  assert scenes.grouping_options(str(workdir)) == tuned
  assert scenes.grouping_options(str(workdir), step=6, tag_threshold=2.0) == (
      dataclasses.replace(tuned, tag_threshold=2.0))  # a flag wins
  assert scenes.grouping_options(str(workdir), step=4) == config_options  # another checkpoint
  other_maps = {"scales": (1.0, 1.5), "map_scale": 2.0}
  assert scenes.grouping_options(str(workdir), **other_maps) == dataclasses.replace(
      config_options, **other_maps)
  params = phosphenes.default_params()
  params["run"]["resolution"] = [64, 64]
  renderer = prediction.PhospheneRenderer(params, num_phosphenes=100)
  pipeline = prediction.ScenePipeline.from_workdirs(str(workdir), renderer=renderer)
  assert pipeline.options == tuned
  # A model held in memory groups with its own config: nothing read from disk.
  loaded = workdir_lib.load_model(workdir, expect=ae.TARGET)
  loaded.config.grouping.min_joints = 7
  in_memory = dataclasses.replace(loaded, workdir="")
  assert prediction.ScenePipeline(in_memory, renderer=renderer).options.min_joints == 7


def test_a_damaged_tuned_grouping_is_one_error_naming_it(tmp_path):
  config = _smoke(tmp_path)
  config_files.save_config(config, tmp_path)
  path = tmp_path / scenes.TUNED_FILE
  whole = {"detection_threshold": 0.5, "min_joints": 4, "tag_threshold": 1.0, "step": 4,
           "split": "train", "images": 4, "scales": [1.0], "map_scale": 1.0}
  for text, reason in (("{", "unreadable"), ('{"step": 3}', "no detection_threshold"),
                       ("[1]", "not a tuned grouping"),
                       (json.dumps({**whole, "min_joints": 4.5}), "min_joints=4.5"),
                       (json.dumps({**whole, "tag_threshold": None}), "tag_threshold=None")):
    path.write_text(text)
    with pytest.raises(ValueError, match=reason) as raised:
      scenes.read_tuned_grouping(tmp_path)
    message = str(raised.value)
    assert str(path) in message and "--tune_grouping" in message and "\n" not in message
    with pytest.raises(ValueError, match=reason):
      scenes.grouping_options(str(tmp_path), step=4)
    # What --tune_grouping starts from: the config's, the damaged file unread.
    assert scenes.grouping_options(str(tmp_path), use_tuned=False) == (
        grouping.GroupingOptions.from_config(config))
    # Every tuned setting given (launch.scenes' flags): the file is not read.
    given = {"detection_threshold": 0.4, "min_joints": 5, "tag_threshold": 1.5}
    assert scenes.grouping_options(str(tmp_path), step=4, **given) == dataclasses.replace(
        grouping.GroupingOptions.from_config(config), **given)
  path.write_text(json.dumps(whole))
  assert scenes.read_tuned_grouping(tmp_path) == whole
  path.unlink()
  assert scenes.read_tuned_grouping(tmp_path) is None


def test_two_dimensional_tags_train_evaluate_with_flip_test_and_guard_the_workdir(tmp_path):
  """`tags.dim=2` trains, evaluates and tunes with and without the flip test;
  resuming its workdir with one-dimensional tags stops with one error and
  leaves the workdir's config.json as it was."""
  workdir = tmp_path / "work"
  config = _smoke(tmp_path)
  config.tags.dim = 2
  train.train_and_evaluate(config, workdir)
  loaded = workdir_lib.load_model(workdir, expect=ae.TARGET)
  assert loaded.config.tags.dim == 2
  lines = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert np.isfinite([l["eval/mp_ceiling_map"] for l in lines if "eval/mp_map" in l]).all()
  for flip_test in (False, True):
    options, _ = scenes.tune_grouping(str(workdir), num_batches=1, batch_size=4,
                                      flip_test=flip_test)
    report = scenes.evaluate_workdir(str(workdir), num_batches=1, batch_size=4,
                                     options=options, flip_test=flip_test)
    assert report["flip_test"] is flip_test and np.isfinite(report["ceiling_map"])
  # The multi-scale test: tuned and evaluated on maps of 64 and 96 px inputs.
  base = scenes.grouping_options(str(workdir), scales=(1.0, 1.5), map_scale=2.0)
  options, _ = scenes.tune_grouping(str(workdir), num_batches=1, batch_size=4, base=base)
  assert (options.scales, options.map_scale) == ((1.0, 1.5), 2.0)
  report = scenes.evaluate_workdir(str(workdir), num_batches=1, batch_size=4, options=options)
  assert np.isfinite(report["map"]) and np.isfinite(report["ceiling_map"])
  saved = (workdir / "config.json").read_text()
  with pytest.raises(checkpoint_recovery.CheckpointError, match="tags.dim"):
    train.train_and_evaluate(_smoke(tmp_path, num_train_steps=6), workdir)
  assert (workdir / "config.json").read_text() == saved
