"""Several people: evaluate a multi-person workdir, and draw scene panels.

`evaluate_workdir` runs the associative-embedding model of a workdir over a
split of scenes (or MPII multi-person images) and returns the AP table
(all images, occlusion and crowd bins, the grouping ceiling, the person
count), and optionally the single-person baseline (a joint model on the
crops of the ground-truth boxes). `scene_rows` gathers the first images'
grouped persons, their contours (a triplet model run top-down on each) and
each representation's phosphenes of the whole scene, for
`viz.scenes.scene_panel` (`scene_row` makes one row of any image and its
persons: `launch.predict` draws its panels with it). `tune_grouping` picks
the detection threshold, the fewest joints of a person and the tag
threshold on training images; with `record=True` it keeps them in the
workdir (`TUNED_FILE`), and `grouping_options` gives them, not the
config's, for the checkpoint and maps they were tuned on: `launch.scenes`
and `launch.predict` then group as the demo's report did.

Predicted persons have no depth: the larger a person's joint box, the
nearer it is taken to be (people of one height, seen in perspective;
`depth_by_size`).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import pathlib
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from triplet_pose import checkpointing
from triplet_pose import config_files
from triplet_pose import data
from triplet_pose import grouping
from triplet_pose import inference
from triplet_pose import keypoints as kp
from triplet_pose import provenance
from triplet_pose import top_down
from triplet_pose import workdir as workdir_lib
from triplet_pose.evaluators import multi_person
from triplet_pose.models import associative_embedding
from triplet_pose.phosphenes import scene as scene_lib
from triplet_pose.prediction import renderer as renderer_lib


def _batches(config, *, split: str, batch_size: int):
  return data.create_iterator(config.input, split=split, batch_size=batch_size,
                              seed=config.seed, shuffle=False, repeat=False)


def _maps_fn(loaded: workdir_lib.LoadedModel, flip_test: bool,
             options: grouping.GroupingOptions):
  apply = jax.jit(functools.partial(inference.predict_scene_maps,
                                    functools.partial(loaded.model.apply, train=False),
                                    flip_test=flip_test, scales=options.scales,
                                    map_scale=options.map_scale))

  def maps(batch):
    heat, tags = apply(loaded.variables, jnp.asarray(batch["image"], jnp.float32) / 255.0)
    return {"heatmaps": np.asarray(heat), "tags": np.asarray(tags)}

  return maps


def _predict_fn(loaded: workdir_lib.LoadedModel, options: grouping.GroupingOptions,
                flip_test: bool):
  maps = _maps_fn(loaded, flip_test, options)
  size = loaded.config.input.image_size
  return lambda batch: multi_person.predict_scene(maps(batch), batch, image_size=size,
                                                  options=options)


def grouping_options(workdir: str, *, step: int | None = None,
                     config: ml_collections.ConfigDict | None = None, use_tuned: bool = True,
                     **chosen) -> grouping.GroupingOptions:
  """The grouping settings of a workdir, with the fields in `chosen` replaced.

  Those of its config (`config.grouping`; `config` default the workdir's
  config.json), except the ones `tune_grouping` recorded (`TUNED_FILE`;
  `use_tuned`) when they were tuned at checkpoint `step` (default: the
  newest) for the same input scales and map side; a setting in `chosen`
  wins over both, and with all of `TUNED` chosen the file is not read.
  """
  config = config_files.load_config(workdir) if config is None else config
  options = grouping.GroupingOptions.from_config(config, **chosen)
  wanted = [k for k in TUNED if k not in chosen]  # none: the file is not read
  tuned = read_tuned_grouping(workdir) if use_tuned and workdir and wanted else None
  if tuned is None:
    return options
  if step is None:
    step = checkpointing.Checkpointer(workdir, read_only=True).latest_step()
  maps = {"scales": list(options.scales), "map_scale": options.map_scale}
  tuned_maps = {k: tuned[k] for k in maps}
  if tuned["step"] != step or tuned_maps != maps:
    logging.warning("%s: the grouping tuned at step %s for %s is not used for step %s and %s; "
                    "the config's is", _tuned_path(workdir), tuned["step"], tuned_maps, step,
                    maps)
    return options
  settings = {k: tuned[k] for k in wanted}
  logging.info("%s: grouping %s as tuned on %s %s images at step %s", workdir, settings,
               tuned["images"], tuned["split"], step)
  return dataclasses.replace(options, **settings)


# Where `tune_grouping(record=True)` keeps a workdir's tuned grouping.
TUNED_FILE = "grouping_tuned.json"

# What `tune_grouping` tries.
DETECTION_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
MIN_JOINTS = (4, 6, 8, 10, 12)
TAG_THRESHOLDS = (1.0, 1.5, 2.0)
# The `GroupingOptions` fields `tune_grouping` picks, in the grid's order.
TUNED = ("detection_threshold", "min_joints", "tag_threshold")


def tuned_settings(options: grouping.GroupingOptions) -> dict[str, Any]:
  """The fields of `options` that `tune_grouping` picks, by name."""
  return {name: getattr(options, name) for name in TUNED}


def tune_grouping(workdir: str, *, split: str = "train", num_batches: int = 4,
                  batch_size: int = 16, flip_test: bool = True,
                  base: grouping.GroupingOptions | None = None, record: bool = False
                  ) -> tuple[grouping.GroupingOptions, list[dict]]:
  """The detection threshold, minimum joints and tag threshold of the best
  mAP on `split` (training images, so that the evaluation split stays
  unseen), on the maps `flip_test` and `base`'s scales give
  (`inference.predict_scene_maps`); `base` (default the config's grouping)
  holds the other settings. `record` writes them to WORKDIR/`TUNED_FILE`
  with the step, images and maps they were tuned on (`grouping_options`).

  Returns:
    (the best options, [{'detection_threshold', 'min_joints',
    'tag_threshold', 'map', 'count_accuracy'} of every setting tried]).
  """
  loaded = workdir_lib.load_model(workdir, expect=associative_embedding.TARGET)
  base = base or grouping.GroupingOptions.from_config(loaded.config)
  maps = _maps_fn(loaded, flip_test, base)
  batches = []
  for i, batch in enumerate(_batches(loaded.config, split=split, batch_size=batch_size)):
    if i >= num_batches:
      break
    batches.append((batch, maps(batch)))
  tried = []
  for values in itertools.product(DETECTION_THRESHOLDS, MIN_JOINTS, TAG_THRESHOLDS):
    setting = dict(zip(TUNED, values))
    options = dataclasses.replace(base, **setting)
    metric = multi_person.MultiPersonAp()
    for batch, found in batches:
      metric.update(batch, {"persons": grouping.predict_persons(
          found["heatmaps"], found["tags"], image_size=loaded.config.input.image_size,
          options=options)})
    report = metric.report()
    tried.append({**setting, "map": report["map"], "count_accuracy": report["count_accuracy"]})
  best = max(tried, key=lambda t: t["map"])
  options = dataclasses.replace(base, **{k: best[k] for k in TUNED})
  if record and jax.process_index() == 0:
    images = sum(len(batch["image"]) for batch, _ in batches)
    _write_tuned(loaded, options, best, split=split, images=images, flip_test=flip_test)
  return options, tried


def _tuned_path(workdir: str | pathlib.Path) -> pathlib.Path:
  return pathlib.Path(workdir) / TUNED_FILE


def _write_tuned(loaded: workdir_lib.LoadedModel, options: grouping.GroupingOptions,
                 best: dict[str, Any], *, split: str, images: int, flip_test: bool) -> None:
  payload = {**tuned_settings(options), "step": loaded.step, "split": split, "images": images,
             "scales": list(options.scales), "map_scale": options.map_scale,
             "flip_test": flip_test, "map": best["map"],
             "count_accuracy": best["count_accuracy"]}
  payload[provenance.KEY] = provenance.provenance(
      models={"scenes": loaded}, dataset=provenance.dataset_info(loaded.config.input, split,
                                                                 examples=images))
  try:
    provenance.write_json(_tuned_path(loaded.workdir), payload)
  except OSError as e:  # a read-only workdir: the tuning is still returned and reported
    logging.warning("the tuned grouping was not kept in %s: %s", loaded.workdir, e)


def read_tuned_grouping(workdir: str | pathlib.Path) -> dict[str, Any] | None:
  """The grouping `tune_grouping(record=True)` kept in a workdir (None: none).

  Raises:
    ValueError: the file is there but is not a tuned grouping (one line,
      naming it).
  """
  path = _tuned_path(workdir)
  if not path.exists():
    return None
  again = "delete it or tune again (launch.scenes --tune_grouping)"
  try:
    tuned = json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise ValueError(f"{path}: unreadable ({e}); {again}") from None
  needed = (*TUNED, "step", "split", "images", "scales", "map_scale")
  missing = [k for k in needed if not isinstance(tuned, dict) or k not in tuned]
  if missing:
    raise ValueError(f"{path}: not a tuned grouping (no {', '.join(missing)}); {again}")
  numbers = {"detection_threshold": (int, float), "tag_threshold": (int, float),
             "min_joints": int, "step": int, "map_scale": (int, float)}
  wrong = [f"{k}={tuned[k]!r}" for k, kind in numbers.items()
           if not isinstance(tuned[k], kind) or isinstance(tuned[k], bool)]
  if wrong:
    raise ValueError(f"{path}: not a tuned grouping ({', '.join(wrong)}); {again}")
  return tuned


def evaluate_workdir(workdir: str, *, split: str | None = None, batch_size: int = 16,
                     num_batches: int = 0, joint_workdir: str | None = None,
                     options: grouping.GroupingOptions | None = None,
                     flip_test: bool = True, intervals: int = 0) -> dict[str, Any]:
  """The multi-person report of a workdir's model over a split.

  Args:
    workdir: a `configs/scenes.py` training workdir.
    split: default the config's evaluation split.
    batch_size: images per batch.
    num_batches: stop after this many (0: the whole split).
    joint_workdir: a single-person joint model for the baseline.
    options: grouping settings (default `grouping_options` of the workdir).
    flip_test: heatmaps averaged with the mirrored input's, tags of both
      side by side (`inference.predict_scene_maps`).
    intervals: bootstrap resamples of the images for 95% intervals
      (`MultiPersonAp.intervals`, with a progress bar; 0: none).

  Returns:
    `MultiPersonAp.report()`, plus 'baseline' (the same for the joint model
    on ground-truth boxes) when `joint_workdir` is given, 'intervals' when
    asked, 'step', 'grouping' (the settings used) and the `provenance` block
    (models, data, settings).
  """
  loaded = workdir_lib.load_model(workdir, expect=associative_embedding.TARGET)
  split = split or loaded.config.input.eval_split
  options = options or grouping_options(workdir, step=loaded.step, config=loaded.config)
  predict = _predict_fn(loaded, options, flip_test)
  metric = multi_person.MultiPersonAp()
  batches = []
  for i, batch in enumerate(_batches(loaded.config, split=split, batch_size=batch_size)):
    if num_batches and i >= num_batches:
      break
    metric.update(batch, predict(batch))
    batches.append(batch)
  report = {"step": loaded.step, "split": split, "flip_test": flip_test,
            "grouping": dataclasses.asdict(options), **metric.report()}
  if intervals:
    report["intervals"] = metric.intervals(resamples=intervals, progress=True)
  used = {"scenes": loaded}
  if joint_workdir:
    joint = workdir_lib.load_model(joint_workdir, expect=kp.JOINTS.name)
    models = inference.PoseModels(joint=joint)
    fn = inference.make_inference_fn(models)
    report["baseline"] = multi_person.single_person_baseline(
        fn, models.variables(), batches, size=models.image_size)
    used["joint"] = joint
  report[provenance.KEY] = provenance.provenance(
      config={"grouping": options, "flip_test": flip_test, "num_batches": num_batches,
              "intervals": intervals},
      models=used, dataset=provenance.dataset_info(loaded.config.input, split,
                                                   examples=report["images"]))
  return report


def depth_by_size(persons: np.ndarray) -> np.ndarray:
  """Depth rank (0 = nearest) of persons (P, K, 2 or 3) by the diagonal of
  their joint box (NaN joints left out)."""
  persons = np.asarray(persons, np.float64)
  if not persons.size:
    return np.zeros(0, int)
  xy = np.where(np.isfinite(persons[..., :2]), persons[..., :2], np.nan)
  extent = np.nan_to_num(np.nanmax(xy, 1) - np.nanmin(xy, 1))
  return np.argsort(np.argsort(-np.hypot(*extent.T)))


def _still(sim, mask: jax.Array, frames: int) -> np.ndarray:
  state = sim.init_state()
  amplitude = sim.sample_stimulus(mask, rescale=True)
  image = None
  for _ in range(frames):
    state, image = sim.step(state, amplitude)
  return np.asarray(image)


def scene_row(image: np.ndarray, persons: np.ndarray, *,
              renderer: renderer_lib.PhospheneRenderer | None,
              contours: np.ndarray | None = None) -> dict[str, Any]:
  """One row of `viz.scenes.scene_panel`: an image, its persons and each
  representation's phosphenes of the whole scene.

  The phosphenes are those of a still scene after `renderer.frames_per_image`
  frames: the skeletons plain, with a gap around nearer bodies, dimmed by
  depth, and with `contours` the contour points; people are ranked in depth
  by `depth_by_size`.

  Args:
    image: (H, W, 3) uint8.
    persons: (P, 16, 3) x, y, score in pixels of `image` (NaN: missing).
    renderer: the simulator and drawing styles (None: no phosphenes).
    contours: (P, 26, 2 or 3) each person's contour points, or None.
  """
  row = {"image": image, "persons": persons, "phosphenes": {}}
  if contours is not None:
    row["contours"] = contours
  if not len(persons) or renderer is None:
    return row
  found = np.asarray(persons, np.float64)
  visible = np.isfinite(found).all(-1).astype(np.float32)
  points = {kp.JOINTS.name: jnp.asarray(np.nan_to_num(found[..., :2]), jnp.float32)}
  vis = {kp.JOINTS.name: jnp.asarray(visible)}
  depth = jnp.asarray(depth_by_size(found))
  skeleton = renderer.styles[kp.JOINTS.name]
  variants = {"skeleton": (skeleton, scene_lib.SceneStyle()),
              "skeleton, gap": (skeleton, scene_lib.SceneStyle(gap=3.0)),
              "skeleton, by depth": (skeleton, scene_lib.SceneStyle(depth_brightness=0.55))}
  if contours is not None:
    points = {**points, kp.CONTOUR.name: jnp.asarray(np.asarray(contours)[..., :2], jnp.float32)}
    variants["contour"] = (renderer.styles[kp.CONTOUR.name], scene_lib.SceneStyle())
  for name, (style, scene_style) in variants.items():
    mask = scene_lib.render_scene(points, image_size=image.shape[:2],
                                  output_size=renderer.sim.resolution, visible=vis, depth=depth,
                                  style=style, scene_style=scene_style)
    row["phosphenes"][name] = _still(renderer.sim, mask, renderer.frames_per_image)
  return row


def scene_rows(workdir: str, *, num_images: int = 3, triplet_workdir: str | None = None,
               split: str | None = None, options: grouping.GroupingOptions | None = None,
               flip_test: bool = True) -> list[dict[str, Any]]:
  """Rows of `viz.scenes.scene_panel` for the first images of a split (fewer
  when the split holds fewer)."""
  loaded = workdir_lib.load_model(workdir, expect=associative_embedding.TARGET)
  config = loaded.config
  batch = next(_batches(config, split=split or config.input.eval_split, batch_size=num_images))
  options = options or grouping_options(workdir, step=loaded.step, config=config)
  persons = _predict_fn(loaded, options, flip_test)(batch)["persons"]
  triplet = None
  if triplet_workdir:
    model = workdir_lib.load_model(triplet_workdir, expect=kp.CONTOUR.name)
    models = inference.PoseModels(triplet=model)
    triplet = (inference.make_inference_fn(models, ground_truth_joints=True),
               models.variables(), models.image_size)
  renderer = renderer_lib.PhospheneRenderer()
  rows = []
  for i in np.flatnonzero(np.asarray(batch["valid"], bool)):  # not the padding
    image, found = np.asarray(batch["image"][i]), persons[i]
    contours = None
    if triplet is not None and len(found):
      fn, variables, triplet_size = triplet
      contours = top_down.contours_per_person(fn, variables, image, found, size=triplet_size)
    rows.append(scene_row(image, found, renderer=renderer, contours=contours))
  return rows
