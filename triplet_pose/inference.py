"""Trained models at inference: flip test, one jitted pose function, size and speed.

* `predict_heatmaps`: last-stack heatmaps, averaged with those of the mirrored
  input (flip test). Integer coordinates are pixel centres, so mirroring a
  heatmap row (x -> w - 1 - x) is exactly the mirror of the image
  (x -> W - 1 - x): no half-pixel shift is needed. A combined model's two
  outputs are each mirrored back with their own permutation.
* `load_model`, `PoseModels` + `make_inference_fn`: the joint model and the
  triplet model (fed with ground-truth joints and/or with the joint model's
  predictions), or one combined model, as one jitted function shared by
  evaluation and `prediction`.
* `count_parameters`, `ms_per_image`: what a comparison of models reports
  next to their accuracy.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from triplet_pose import heatmaps as hm
from triplet_pose import inputs
from triplet_pose import keypoints as kp


def flip_input_images(x: jax.Array) -> jax.Array:
  """Mirrors model inputs (B, H, W, C); joint-heatmap channels (3:) are permuted."""
  x = x[:, :, ::-1]
  if x.shape[-1] == 3:
    return x
  perm = np.asarray(kp.JOINT_FLIP_PERMUTATION) + 3
  return jnp.concatenate([x[..., :3], x[..., perm]], axis=-1)


def unflip_heatmaps(maps: jax.Array) -> jax.Array:
  """Maps heatmaps (B, h, w, K) predicted on a mirrored input back, permuted.

  K = 16 are joints, K = 26 contour points.
  """
  kind = "joints" if maps.shape[-1] == kp.NUM_JOINTS else "contour"
  return maps[:, :, ::-1][..., np.asarray(kp.flip_permutation(kind))]


def _last_stacks(outputs) -> tuple[jax.Array, ...]:
  outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
  return tuple(o[:, -1] for o in outputs)


def predict_heatmaps(apply_fn: Callable[[Any, jax.Array], Any], variables: Any,
                     x: jax.Array, *, flip_test: bool = True
                     ) -> jax.Array | tuple[jax.Array, ...]:
  """Last-stack heatmaps (B, h, w, K), averaged with the mirror's when `flip_test`.

  Args:
    apply_fn: (variables, inputs (B, H, W, C)) -> (B, S, h, w, K), or a tuple
      of such arrays (a combined model: joints, contour), e.g.
      `functools.partial(model.apply, train=False)`.
    variables: the model's {params, batch_stats}.
    x: float32 model inputs.
    flip_test: also run the mirrored input (in the same batch) and average.

  Returns:
    The (B, h, w, K) heatmaps, or a tuple of them for a model of several outputs.
  """
  if flip_test:
    both = _last_stacks(apply_fn(variables, jnp.concatenate([x, flip_input_images(x)])))
    n = x.shape[0]
    maps = tuple(0.5 * (m[:n] + unflip_heatmaps(m[n:])) for m in both)
  else:
    maps = _last_stacks(apply_fn(variables, x))
  return maps[0] if len(maps) == 1 else maps


def decode_to_input_pixels(maps: jax.Array, image_size: int) -> tuple[jax.Array, jax.Array]:
  """Heatmaps (B, h, w, K) -> keypoints (B, K, 2) in input pixels, confidence (B, K)."""
  coords, confidence = hm.decode(maps)
  return hm.rescale_coordinates(coords, maps.shape[1:3], image_size), confidence


@dataclasses.dataclass
class LoadedModel:
  """A trained model restored from a workdir."""
  config: ml_collections.ConfigDict
  model: Any
  variables: Any
  workdir: str
  step: int

  @property
  def target(self) -> str:
    return self.config.model.target


def load_model(workdir: str | pathlib.Path, *, step: int | None = None,
               expect: str | Sequence[str] | None = None) -> LoadedModel:
  """Restores the model of a training workdir (newest checkpoint by default).

  Args:
    workdir: a `launch.train` workdir.
    step: the checkpoint step (default: newest).
    expect: the `model.target` (or targets) the caller can use.

  Raises:
    FileNotFoundError: no config.json or checkpoint in `workdir`.
    ValueError: the workdir's model does not predict `expect`.
  """
  from triplet_pose import checkpointing, train  # pylint: disable=g-import-not-at-top
  config, model, variables = train.load_trained_model(workdir, step=step)
  expected = (expect,) if isinstance(expect, str) else tuple(expect or ())
  if expected and config.model.target not in expected:
    raise ValueError(f"{workdir} holds a model.target={config.model.target!r} model, "
                     f"expected {' or '.join(repr(e) for e in expected)}")
  if step is None:
    step = checkpointing.Checkpointer(workdir, read_only=True).latest_step()
  return LoadedModel(config, model, variables, str(workdir), int(step))


@dataclasses.dataclass
class PoseModels:
  """The joint and/or the triplet model used together, or one combined model.

  Raises:
    ValueError: for a model of the wrong kind in a slot, none at all, or a
      combined model together with separate ones.
  """
  joint: LoadedModel | None = None
  triplet: LoadedModel | None = None
  combined: LoadedModel | None = None

  def __post_init__(self):
    for slot, target in (("joint", "joints"), ("triplet", "contour"),
                         ("combined", "combined")):
      model = getattr(self, slot)
      if model is not None and model.target != target:
        raise ValueError(f"PoseModels.{slot} must be a model.target={target!r} model; "
                         f"{model.workdir} holds a {model.target!r} one")
    if self.combined and (self.joint or self.triplet):
      raise ValueError("a combined model predicts joints and contour points itself: "
                       "pass it without a joint or triplet model")
    if not self.models:
      raise ValueError("PoseModels needs at least one model")

  @property
  def models(self) -> list[LoadedModel]:
    return [m for m in (self.joint, self.triplet, self.combined) if m is not None]

  @property
  def image_size(self) -> int:
    sizes = {m.config.input.image_size for m in self.models}
    if len(sizes) != 1:
      raise ValueError(f"the models were trained at different input sizes {sorted(sizes)}")
    return sizes.pop()

  @property
  def input_name(self) -> str:
    """The dataset (`config.input.name`) the first model was trained on."""
    return self.models[0].config.input.name

  def variables(self) -> dict[str, Any]:
    return {slot: m.variables if m else None
            for slot, m in (("joint", self.joint), ("triplet", self.triplet),
                            ("combined", self.combined))}

  def num_parameters(self) -> int:
    """Trainable parameters of all the networks together."""
    return sum(count_parameters(m.variables) for m in self.models)


def make_inference_fn(models: PoseModels, *, flip_test: bool = True,
                      ground_truth_joints: bool = False):
  """A jitted (variables, images, gt_joints, gt_visible) -> dict of predictions.

  `images` are (B, S, S, 3) uint8 or float crops at the models' input size;
  `variables` is `models.variables()`; `gt_joints` (B, 16, 2) in crop pixels
  and `gt_visible` (B, 16) feed the triplet model when `ground_truth_joints`
  (pass None otherwise).

  The result holds, for what `models` has: `joints`, `joint_confidence`,
  `joint_heatmaps` (joint or combined model); `contour`, `contour_confidence`,
  `contour_heatmaps` (combined model, or triplet model on predicted joints,
  which needs both models); `contour_gt`, `contour_gt_confidence`,
  `contour_gt_heatmaps` (triplet model on ground-truth joints). Keypoints are
  in crop pixels.
  """
  joint, triplet, combined = models.joint, models.triplet, models.combined
  size = models.image_size

  def run(model, variables, x):
    apply = functools.partial(model.model.apply, train=False)
    maps = predict_heatmaps(apply, variables, x, flip_test=flip_test)
    return [(m, *decode_to_input_pixels(m, size))
            for m in (maps if isinstance(maps, tuple) else (maps,))]

  def run_triplet(variables, images, joints, visible):
    joint_maps = inputs.joint_input_heatmaps(triplet.config, joints, visible,
                                             image_size=size)
    return run(triplet, variables, jnp.concatenate([images, joint_maps], axis=-1))[0]

  def outputs(prefix, maps, coords, conf):
    return {prefix[0]: coords, f"{prefix[1]}_confidence": conf,
            f"{prefix[1]}_heatmaps": maps}

  joint_names, contour_names = ("joints", "joint"), ("contour", "contour")

  def infer(variables, images, gt_joints=None, gt_visible=None):
    images = inputs.images_to_float(images)
    out = {}
    if combined is not None:
      joint_out, contour_out = run(combined, variables["combined"], images)
      return {**outputs(joint_names, *joint_out), **outputs(contour_names, *contour_out)}
    if joint is not None:
      maps, coords, conf = run(joint, variables["joint"], images)[0]
      out.update(outputs(joint_names, maps, coords, conf))
      if triplet is not None:
        out.update(outputs(contour_names, *run_triplet(
            variables["triplet"], images, coords, jnp.ones(coords.shape[:-1], jnp.float32))))
    if triplet is not None and ground_truth_joints:
      out.update(outputs(("contour_gt", "contour_gt"), *run_triplet(
          variables["triplet"], images, gt_joints, gt_visible.astype(jnp.float32))))
    return out

  return jax.jit(infer)


def count_parameters(variables: Any) -> int:
  """Trainable parameters (the `params` collection; no batch statistics)."""
  params = variables["params"] if "params" in variables else variables
  return int(sum(np.size(leaf) for leaf in jax.tree.leaves(params)))


def ms_per_image(fn: Callable[..., Any], *args, batch_size: int, repeats: int = 5
                 ) -> float:
  """Median wall time of `fn(*args)` in milliseconds per image.

  One untimed call compiles and warms up; each of the `repeats` timed calls
  waits for the result on the device (`block_until_ready`). Pass arguments
  already on the device, so host-to-device copies are not timed.

  Raises:
    ValueError: for repeats < 1 or batch_size < 1.
  """
  if repeats < 1 or batch_size < 1:
    raise ValueError(f"repeats and batch_size must be >= 1, got {repeats}, {batch_size}")
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return 1000.0 * float(np.median(times)) / batch_size


def device_description() -> str:
  """Where inference ran, e.g. 'gpu (NVIDIA H100 80GB HBM3)' or 'cpu (2 cores)'."""
  device = jax.devices()[0]
  if device.platform == "cpu":
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"cpu ({cores} cores)"
  return f"{device.platform} ({device.device_kind})"
