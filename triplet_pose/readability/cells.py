"""One cell of the readability benchmark: an observer for a (representation, N).

A cell trains a fresh observer on the phosphene images of the training
figures' true poses, drawn in one representation and rendered by the
simulator of one phosphene count, and evaluates it on held-out validation
figures: rendered from their true pose (what the representation can carry at
best) and, when trained pose models are given, from the models' predicted
pose (the real pipeline). The simulator of a phosphene count is the same for
every representation (dynaphos' default parameters, magnification layout,
random thresholds from `config.seed`).

* `observer_inputs` / `cached_inputs`: what the cells of a representation
  start from (masks, or keypoints for `learned`), shared by every N.
* `run_cell`: trains and evaluates one observer.
* `chance`: PCKh of always answering the mean pose.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from triplet_pose import metrics
from triplet_pose import phosphene_loss
from triplet_pose import phosphenes
from triplet_pose.readability import data as data_lib
from triplet_pose.readability import observer as observer_lib
from triplet_pose.readability import representations as reps

SOURCE_SIZE = data_lib.SOURCE_SIZE


def _summary(report: Mapping[str, Any]) -> dict[str, float]:
  return {**report["groups"], "Mean@0.1": report["Mean@0.1"], "AUC": report["AUC"]}


def _evaluate(joints, split) -> dict[str, float]:
  visible = np.ones(split["joints"].shape[:2], np.float32)
  return _summary(metrics.pckh_report(joints, split["joints"], visible, split["head_size"]))


def chance(data) -> dict[str, float]:
  """PCKh of always answering the training figures' mean pose."""
  mean = np.mean(data["train"]["joints"], axis=0)
  val = data["validation"]
  return _evaluate(np.broadcast_to(mean, val["joints"].shape), val)


def _predicted_split(representation, data):
  """The validation split with the models' keypoints, if they predict what it shows."""
  predicted = data.get("predicted") or {}
  if representation.uses_pose and all(k in predicted for k in representation.keypoint_sets):
    return {**data["validation"], **predicted}
  return None


def observer_inputs(representation: reps.Representation, data, *,
                    config: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  """Per split, what the cells of a representation start from (shared by every N).

  Drawn and image representations: activation masks at the simulator's
  resolution; `learned`: the keypoints (N, 42, 2), joints then contour.
  Splits: 'train', 'validation' and, when the models predict what the
  representation shows, 'predicted' (validation figures, predicted pose).
  """
  splits = {"train": data["train"], "validation": data["validation"]}
  predicted = _predicted_split(representation, data)
  if predicted is not None:
    splits["predicted"] = predicted
  if representation.kind == "learned":
    return {k: np.concatenate([v["joints"], v["contour"]], axis=1) for k, v in splits.items()}
  res = (config.simulator_resolution,) * 2
  return {k: reps.draw(representation, v, image_size=(SOURCE_SIZE,) * 2, output_size=res,
                       line_width=config.line_width) for k, v in splits.items()}


def cached_inputs(representation: reps.Representation, data, *,
                  config: ml_collections.ConfigDict, workdir: pathlib.Path
                  ) -> dict[str, np.ndarray]:
  """`observer_inputs`, masks kept in `workdir/masks/<name>.npz` as uint8.

  Drawing the masks of every figure costs about as much as training an
  observer; kept on disk, the grid can run phosphene count by phosphene
  count (a partial run has every representation) and resume cheaply. The
  1/255 steps are far below what the electrodes resolve.
  """
  if representation.kind == "learned":
    return observer_inputs(representation, data, config=config)
  meta = json.dumps([data.get("meta"), config.simulator_resolution, config.line_width])
  path = workdir / "masks" / f"{representation.name}.npz"
  path.parent.mkdir(parents=True, exist_ok=True)
  masks = data_lib.cached_npz(path, lambda: {
      k: np.round(v * 255).astype(np.uint8)
      for k, v in observer_inputs(representation, data, config=config).items()}, meta)
  return {k: v.astype(np.float32) / 255 for k, v in masks.items()}


def _front(representation, sim, config):
  """The observer's front end and its initial parameters (`learned`: the encoder)."""
  oc = config.observer
  if representation.kind != "learned":
    return observer_lib.identity_front, None
  encoder = observer_lib.Encoder(oc.encoder_features, sim)
  front = observer_lib.learned_front(encoder, config=oc, source_size=SOURCE_SIZE,
                                     frames=config.frames)
  maps = observer_lib.pose_heatmaps(jnp.zeros((1, 42, 2)), source_size=SOURCE_SIZE,
                                    size=oc.image_size, sigma=oc.encoder_sigma)
  return front, encoder.init(jax.random.PRNGKey(config.seed + 1), maps)["params"]


def run_cell(representation: reps.Representation, num_phosphenes: int, data, *,
             config: ml_collections.ConfigDict, inputs: Mapping[str, np.ndarray] | None = None,
             seed: int | None = None, log: Callable[[int, float], None] | None = None
             ) -> dict[str, Any]:
  """Trains and evaluates one observer (one cell of the table).

  Args:
    representation: what is shown.
    num_phosphenes: phosphenes of the simulator; 0 shows the observer the
      unrendered activation mask (no implant: the representation's ceiling).
    data: `data.load_data`'s result.
    config: `benchmark.benchmark_config()`.
    inputs: `observer_inputs(representation, data)`, if already made.
    seed: the observer's seed (default `config.seed`); the simulator's is
      always `config.seed`.
    log: training progress, log(step, loss).

  Returns:
    {'ground_truth': PCKh summary, 'predicted': summary or None, 'ssim':
    mean SSIM of predicted- vs true-pose images or None, 'train_loss',
    'phosphenes', 'example': (S, S) image of validation person
    `config.example_index`, 'example_mask': its mask (or pose heatmaps)}.
  """
  learned = representation.kind == "learned"
  if learned and not num_phosphenes:
    raise ValueError("the learned representation needs the simulator (num_phosphenes > 0)")
  oc = config.observer
  if inputs is None:
    inputs = observer_inputs(representation, data, config=config)
  sim = None
  if num_phosphenes:
    options = phosphenes.Options(threshold_gradient="sigmoid" if learned else "none")
    sim = reps.build_simulator(num_phosphenes, seed=config.seed,
                               resolution=config.simulator_resolution, options=options)
  factor = config.simulator_resolution // oc.image_size
  if learned:
    x = dict(inputs)
    example_mask = np.asarray(observer_lib.pose_heatmaps(
        jnp.asarray(x["validation"][config.example_index][None]), source_size=SOURCE_SIZE,
        size=oc.image_size, sigma=oc.encoder_sigma))[0].max(-1)
  elif sim is None:  # the unrendered mask, pooled (the sanity check of the observer)
    x = {k: np.asarray(reps.pool(jnp.asarray(v), factor)) for k, v in inputs.items()}
    example_mask = inputs["validation"][config.example_index]
  else:
    x = {k: reps.phosphene_images(sim, v, frames=config.frames, factor=factor)
         for k, v in inputs.items()}
    example_mask = inputs["validation"][config.example_index]
  front, front_params = _front(representation, sim, config)
  trained = observer_lib.train(x["train"], data["train"]["joints"], config=oc,
                               seed=config.seed if seed is None else seed,
                               source_size=SOURCE_SIZE, front=front, front_params=front_params,
                               log=log)
  predict = lambda x: observer_lib.predict(trained, x, config=oc, source_size=SOURCE_SIZE,
                                           front=front)
  val = data["validation"]
  joints, seen_true = predict(x["validation"])
  result = {"ground_truth": _evaluate(joints, val), "predicted": None, "ssim": None,
            "train_loss": trained["loss"], "phosphenes": sim.num_phosphenes if sim else 0,
            "example": seen_true[config.example_index], "example_mask": example_mask}
  if "predicted" in x:
    joints, seen = predict(x["predicted"])
    result["predicted"] = _evaluate(joints, val)
    result["ssim"] = float(np.mean(phosphene_loss.ssim(jnp.asarray(seen),
                                                       jnp.asarray(seen_true))))
  elif not representation.uses_pose and data.get("predicted"):
    result["predicted"], result["ssim"] = result["ground_truth"], 1.0  # same images
  return result

