"""Trained models at inference: flip test, one jitted pose function, size and speed.

* `predict_heatmaps`: last-stack heatmaps, averaged with those of the mirrored
  input (flip test). Integer coordinates are pixel centres, so mirroring a
  heatmap row (x -> w - 1 - x) is exactly the mirror of the image
  (x -> W - 1 - x): no half-pixel shift is needed. A combined model's two
  outputs are each mirrored back with their own permutation.
* `predict_scene_maps`: the same for an associative-embedding model: the
  heatmaps averaged, and each cell's tag from the plain and the mirrored
  input side by side (Newell et al. concatenate them), scaled by 1/sqrt(2)
  so that a tag seen alike in both keeps its distances to the others. With
  several input scales (Newell et al.'s multi-scale test) the maps of each
  are resized to one size, heatmaps averaged, tags side by side likewise.
* `PoseModels` + `make_inference_fn`: the joint model and the triplet model
  (fed with ground-truth joints or with the joint model's predictions), or
  one combined model (all loaded by `workdir.load_model`), as one jitted
  function shared by evaluation and prediction, whose outputs are keyed by
  keypoint set.
* `count_parameters`, `ms_per_image`: what a comparison of models reports
  next to their accuracy.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from triplet_pose import heatmaps as hm
from triplet_pose import inputs
from triplet_pose import keypoints as kp
from triplet_pose import transforms
from triplet_pose import workdir
from triplet_pose.models import associative_embedding


def flip_input_images(x: jax.Array) -> jax.Array:
  """Mirrors model inputs (B, H, W, C); joint-heatmap channels (3:) are permuted."""
  x = x[:, :, ::-1]
  if x.shape[-1] == 3:
    return x
  perm = np.asarray(kp.JOINT_FLIP_PERMUTATION) + 3
  return jnp.concatenate([x[..., :3], x[..., perm]], axis=-1)


def unflip_heatmaps(maps: jax.Array, keypoint_set: kp.KeypointSet) -> jax.Array:
  """Maps heatmaps (B, h, w, K) predicted on a mirrored input back, permuted."""
  return maps[:, :, ::-1][..., np.asarray(keypoint_set.flip_permutation)]


def predict_heatmaps(apply_fn: Callable[[Any, jax.Array], dict[str, jax.Array]],
                     variables: Any, x: jax.Array, *, flip_test: bool = True
                     ) -> dict[str, jax.Array]:
  """Last-stack heatmaps (B, h, w, K) of every keypoint set the model predicts.

  Args:
    apply_fn: (variables, inputs (B, H, W, C)) -> {set name: (B, S, h, w, K)},
      e.g. `functools.partial(model.apply, train=False)`.
    variables: the model's {params, batch_stats}.
    x: float32 model inputs.
    flip_test: also run the mirrored input (in the same batch) and average.

  Returns:
    {set name: (B, h, w, K)}.
  """
  if not flip_test:
    return {name: maps[:, -1] for name, maps in apply_fn(variables, x).items()}
  both = apply_fn(variables, jnp.concatenate([x, flip_input_images(x)]))
  n = x.shape[0]
  return {name: 0.5 * (maps[:n, -1] + unflip_heatmaps(maps[n:, -1], kp.get(name)))
          for name, maps in both.items()}


def predict_scene_maps(apply_fn: Callable[[Any, jax.Array], dict[str, jax.Array]],
                       variables: Any, x: jax.Array, *, flip_test: bool = True,
                       scales: tuple[float, ...] = (1.0,), map_scale: float = 1.0
                       ) -> tuple[jax.Array, jax.Array]:
  """Last-stack heatmaps (B, h, w, K) and tags of an associative-embedding model.

  Args:
    apply_fn, variables, x: as `predict_heatmaps`.
    flip_test: also run the mirrored input: heatmaps averaged, tags (B, h, w,
      K, 2D) of the plain and the mirrored input side by side, / sqrt(2).
    scales: Newell et al.'s multi-scale test: the input resized by each
      (sides rounded; the model must accept them), every scale's maps
      resized to one size (`map_scale`), the heatmaps averaged, the tags
      side by side / sqrt(len(scales)), as the flip test does.
    map_scale: side of the maps returned, in sides of the maps the model
      gives for the unscaled input (2: twice as fine).

  Returns:
    (heatmaps, tags): tags (B, h, w, K) or (B, h, w, K, D) as the model
    gives them; (B, h, w, K, n D) for n runs (flip test, scales).
  """
  if not scales:
    raise ValueError("scales: at least one input scale is needed")
  b, h, w, c = x.shape
  found = []
  for scale in scales:
    scaled = x if scale == 1 else jax.image.resize(
        x, (b, round(h * scale), round(w * scale), c), "linear")
    found.append(_scene_maps_at(apply_fn, variables, scaled, flip_test=flip_test))
  if len(found) == 1 and map_scale == 1:
    return found[0]
  size = tuple(round(n / scales[0] * map_scale) for n in found[0][0].shape[1:3])
  heat = jnp.mean(jnp.stack([_resize_maps(m, size) for m, _ in found]), axis=0)
  tags = jnp.concatenate([_resize_maps(associative_embedding.with_embedding_axis(t, 4), size)
                          for _, t in found], axis=-1)
  return heat, tags / np.sqrt(len(found))


def _scene_maps_at(apply_fn, variables, x, *, flip_test):
  joints, tags = kp.JOINTS.name, associative_embedding.TAGS
  if not flip_test:
    out = apply_fn(variables, x)
    return out[joints][:, -1], out[tags][:, -1]
  both = apply_fn(variables, jnp.concatenate([x, flip_input_images(x)]))
  n = x.shape[0]
  maps = both[joints][:, -1]
  heat = 0.5 * (maps[:n] + unflip_heatmaps(maps[n:], kp.JOINTS))
  vectors = associative_embedding.with_embedding_axis(both[tags][:, -1], 4)
  mirrored = vectors[n:, :, ::-1][..., np.asarray(kp.JOINTS.flip_permutation), :]
  return heat, jnp.concatenate([vectors[:n], mirrored], axis=-1) / np.sqrt(2.0)


def _resize_maps(maps: jax.Array, size: tuple[int, int]) -> jax.Array:
  """(B, h, w, ...) maps to (B, *size, ...), bilinear: pixel centres stay
  aligned (`heatmaps.rescale_coordinates`)."""
  if maps.shape[1:3] == size:
    return maps
  return jax.image.resize(maps, (maps.shape[0], *size, *maps.shape[3:]), "linear")


@dataclasses.dataclass
class PoseModels:
  """The joint and/or the triplet model used together, or one combined model.

  Raises:
    ValueError: for a model of the wrong kind in a slot, none at all, or a
      combined model together with separate ones.
  """
  joint: workdir.LoadedModel | None = None
  triplet: workdir.LoadedModel | None = None
  combined: workdir.LoadedModel | None = None

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
  def models(self) -> list[workdir.LoadedModel]:
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
  """A jitted (variables, images, gt_joints, gt_visible) -> predictions.

  `images` are (B, S, S, 3) uint8 or float crops at the models' input size;
  `variables` is `models.variables()`. The triplet model reads the joint
  model's predicted joints, or with `ground_truth_joints` the given
  `gt_joints` (B, 16, 2) in crop pixels and `gt_visible` (B, 16) (pass None
  otherwise).

  Returns:
    {'keypoints': {set: (B, K, 2) crop pixels}, 'confidence': {set: (B, K)},
    'heatmaps': {set: (B, h, w, K)}} for every set the models predict
    ('joints' from a joint or combined model, 'contour' from a combined
    model or a triplet model).
  """
  joint, triplet, combined = models.joint, models.triplet, models.combined
  if triplet is not None and joint is None and not ground_truth_joints:
    raise ValueError("a triplet model needs a joint model or ground_truth_joints=True")
  size = models.image_size

  def run(model, variables, x, out):
    apply = functools.partial(model.model.apply, train=False)
    for name, maps in predict_heatmaps(apply, variables, x, flip_test=flip_test).items():
      coords, confidence = hm.decode_to_pixels(maps, size)
      out["keypoints"][name], out["confidence"][name] = coords, confidence
      out["heatmaps"][name] = maps

  def infer(variables, images, gt_joints=None, gt_visible=None):
    images = transforms.to_float_image(images)
    out = {"keypoints": {}, "confidence": {}, "heatmaps": {}}
    if combined is not None:
      run(combined, variables["combined"], images, out)
    if joint is not None:
      run(joint, variables["joint"], images, out)
    if triplet is not None:
      if ground_truth_joints:
        joints, visible = gt_joints, gt_visible.astype(jnp.float32)
      else:
        joints = out["keypoints"][kp.JOINTS.name]
        visible = jnp.ones(joints.shape[:-1], jnp.float32)
      joint_maps = inputs.joint_input_heatmaps(triplet.config, joints, visible,
                                               image_size=size)
      run(triplet, variables["triplet"], jnp.concatenate([images, joint_maps], -1), out)
    return out

  return jax.jit(infer)


def count_parameters(variables: Any) -> int:
  """Trainable parameters (the `params` collection; no batch statistics)."""
  params = variables["params"] if "params" in variables else variables
  return int(sum(np.size(leaf) for leaf in jax.tree.leaves(params)))


def ms_per_image(fn: Callable[..., Any], *args, batch_size: int, repeats: int = 5,
                 warm_up: bool = True) -> float:
  """Median wall time of `fn(*args)` in milliseconds per image.

  One untimed call compiles and warms up (`warm_up=False`: `fn` has already
  run on arguments of these shapes); each of the `repeats` timed calls
  waits for the result on the device (`block_until_ready`). Pass arguments
  already on the device, so host-to-device copies are not timed.

  Raises:
    ValueError: for repeats < 1 or batch_size < 1.
  """
  if repeats < 1 or batch_size < 1:
    raise ValueError(f"repeats and batch_size must be >= 1, got {repeats}, {batch_size}")
  if warm_up:
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
