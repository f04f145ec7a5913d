"""The readability observer answering the experiment's own trials.

For every condition (representation, N) a fresh observer
(`readability.observer`: the benchmark's hourglass, trained on phosphene
images alone to find the 16 joints) is trained on training figures drawn
and simulated exactly as the stimuli are (same resolution, line width,
frames and electrode layout), then shown the very stimulus images of the
experiment, average-pooled to its input size. Its answers use the rule the
people's answers are scored against:

* choice trials: `readability.choice.choose`, the candidate whose joints
  best match the joints it read;
* click trials: its joints' head (the middle of upper neck and head top),
  wrists and ankles, in stimulus pixels.

Each item gains `observer: {'choice': i}` or `{'clicks': [[x, y], ...]}`,
and the manifest `observer: {...}` (what was trained). Off when
`config.observer.steps` is 0; the full grid costs about as much as the
readability benchmark's.
"""

from __future__ import annotations

import pathlib
from typing import Any, Callable

import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from triplet_pose.data.synthetic_figures import figures
from triplet_pose.experiment import design
from triplet_pose.readability import choice as choice_lib
from triplet_pose.readability import data as data_lib
from triplet_pose.readability import observer as observer_lib
from triplet_pose.readability import representations as reps

SOURCE_SIZE = figures.SIZE


def observer_settings(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The benchmark's observer config with the experiment's overrides."""
  oc = observer_lib.observer_config()
  for key in ("steps", "image_size", "hourglass_depth", "num_features", "stem_features",
              "batch_size", "eval_batch_size"):
    if key in config.observer:
      oc[key] = config.observer[key]
  return oc


def _training_images(config, rep, sim, split, oc) -> np.ndarray:
  res = config.simulator_resolution
  masks = reps.draw(rep, split, image_size=(SOURCE_SIZE,) * 2, output_size=(res, res),
                    line_width=config.line_width)
  return reps.phosphene_images(sim, masks, frames=config.frames, factor=res // oc.image_size)


def _candidate_poses(item, examples, pool) -> np.ndarray:
  poses = [pool[i] for i in item["distractors"]]
  poses.insert(item["answer"], examples[item["figure"]]["joints"])
  return np.stack(poses)


def add_to_manifest(config: ml_collections.ConfigDict, manifest: dict[str, Any],
                    workdir: pathlib.Path, *, pool: np.ndarray,
                    log: Callable[[str], None] = print) -> None:
  """Adds the observer's answers to the main items of `manifest` (in place).

  Args:
    config: the experiment's config (`config.observer`: steps, num_train and
      optional overrides of the benchmark's observer config).
    manifest: what `stimuli.build` planned; its stimulus images must exist.
    workdir: the experiment's folder.
    pool: the distractor pool (`stimuli.pose_pool(config)`).
    log: progress lines.
  """
  if not config.observer.steps:
    return
  oc = observer_settings(config)
  res = config.simulator_resolution
  if res % oc.image_size:
    raise ValueError(f"config.simulator_resolution={res} must be a multiple of the observer's "
                     f"image_size={oc.image_size}")
  factor = res // oc.image_size
  split_config = ml_collections.ConfigDict(dict(
      num_train=config.observer.num_train, num_validation=0, data_seed=config.data_seed,
      simulator_resolution=res))
  train = data_lib.make_split(split_config, "train", keep_images=True)
  train["image"] = train.pop("full_image")
  examples = {}
  out = workdir / design.STIMULI
  for cond in manifest["design"]["conditions"]:
    rep_name, n = cond.split("/")
    rep = reps.get(rep_name)
    items = [i for i in manifest["items"].values()
             if i["condition"] == cond and i["phase"] == "main"]
    sim = reps.build_simulator(int(n), seed=config.seed, resolution=res)
    trained = observer_lib.train(_training_images(config, rep, sim, train, oc),
                                 train["joints"], config=oc, seed=config.seed,
                                 source_size=SOURCE_SIZE)
    shown = np.stack([np.asarray(Image.open(out / i["stimulus"]), np.float32) / 255
                      for i in items])
    pooled = np.asarray(reps.pool(jnp.asarray(shown), factor))
    joints, _ = observer_lib.predict(trained, pooled, config=oc, source_size=SOURCE_SIZE)
    for item, read in zip(items, joints):
      if item["task"] == "choice":
        if item["figure"] not in examples:
          examples[item["figure"]] = figures.make_example(config.data_seed, item["figure"],
                                                          stream=config.figure_stream)
        poses = _candidate_poses(item, examples, pool)
        item["observer"] = {"choice": int(choice_lib.choose(read, poses))}
      else:
        s = item["size"] / SOURCE_SIZE
        clicks = [np.mean([read[j] for j in group], axis=0) * s for group in design.CLICK_JOINTS]
        item["observer"] = {"clicks": [[float(np.clip(v, 0, item["size"] - 0.01)) for v in c]
                                       for c in clicks]}
    correct = np.mean([i["observer"]["choice"] == i["answer"] for i in items
                       if i["task"] == "choice"])
    log(f"observer {cond}: loss {trained['loss']:.4f}, choice accuracy {correct:.2f}")
  manifest["observer"] = {"reader": "readability observer (one per condition)",
                          "steps": int(oc.steps), "num_train": int(config.observer.num_train),
                          "image_size": int(oc.image_size)}
