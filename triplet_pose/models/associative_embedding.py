"""Associative embedding (Newell, Huang and Deng 2017) on the stacked hourglass.

Bottom-up multi-person pose: per joint, a heatmap of every person's joint and
a tag map; the joints of one person get similar tags, different persons
distant ones. The network is `StackedHourglass` with 2K outputs per stack
(the first K heatmaps, the next K tags), so its predictions, tags
included, feed the next stack as in the reference. With `tags.dim` D > 1
each joint has a D-dimensional tag (K + K D outputs per stack): persons
then need only differ in one direction of D, where one-dimensional tags
must spread every person of an image along one line.

Losses, per stack (summed over stacks by the training loop, as the thesis
sums its heatmap losses):

* heatmaps: the project's heatmap MSE against the maximum over persons of
  each person's target;
* grouping: for each person n with reference tag h_n (the mean tag at its
  annotated joints), pull = mean over persons of the mean squared distance
  of its joints' tags to h_n; push = mean over ordered pairs of distinct
  persons of exp(-|h_n - h_m|^2 / 2) (the paper's), or with
  `push_kernel='laplace'` exp(-|h_n - h_m|) (|.|: Euclidean length of a
  D-dimensional difference). Both are averaged over the images. The
  Gaussian is flat where tags are equal, so a small model whose tags start
  near zero can stay there (all persons one tag); the Laplace kernel pushes
  equally hard from the start.

Scene batches pad persons to a fixed maximum (`persons_valid`), so every
shape is static and the loss is jitted with the step.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from triplet_pose import heatmaps
from triplet_pose import keypoints as kp
from triplet_pose.models.hourglass import StackedHourglass

TAGS = "tags"
TARGET = "multi_person"  # config.model.target of this model
PUSH_KERNELS = ("gaussian", "laplace")


class AssociativeEmbedding(nn.Module):
  """Stacked hourglass predicting joint heatmaps and tag maps.

  Called as `model.apply(variables, images, train=False)` with images
  (B, H, W, 3) in [0, 1]. Returns {'joints': (B, S, H/4, W/4, 16) heatmaps,
  'tags': (B, S, H/4, W/4, 16) tags}; with `tag_dim` D > 1 the tags are
  (B, S, H/4, W/4, 16, D).
  """
  num_stacks: int
  tag_dim: int = 1
  num_features: int = 256
  hourglass_depth: int = 4
  dtype: Any = jnp.float32
  remat: bool = False
  stem_features: int = 128
  scan_unroll: int = 1  # StackedHourglass.scan_unroll

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> dict[str, jax.Array]:
    k = kp.JOINTS.size
    if self.tag_dim < 1:
      raise ValueError(f"tags.dim must be at least 1, got {self.tag_dim}")
    out = StackedHourglass(
        self.num_stacks, num_features=self.num_features, num_keypoints=k + k * self.tag_dim,
        hourglass_depth=self.hourglass_depth, dtype=self.dtype, remat=self.remat,
        stem_features=self.stem_features, scan_unroll=self.scan_unroll, output_key="maps",
        name="hourglass")(images, train)
    maps = out["maps"]
    tags = maps[..., k:]
    if self.tag_dim > 1:
      tags = tags.reshape(tags.shape[:-1] + (k, self.tag_dim))
    return {kp.JOINTS.name: maps[..., :k], TAGS: tags}


def tag_dim(tags: ml_collections.ConfigDict | None) -> int:
  """Numbers per joint's tag that a `config.tags` section asks for; configs
  written before `dim` existed had one."""
  return int((tags or {}).get("dim", 1))


def with_embedding_axis(tags, ndim: int):
  """Tags with their embedding axis last: `ndim` is the number of axes
  one-dimensional tags have here ((B, h, w, K): 4); those get an axis of
  size 1, tags with one more axis (..., K, D) are returned as they are."""
  if tags.ndim == ndim:
    return tags[..., None]
  if tags.ndim != ndim + 1:
    raise ValueError(f"tags of {ndim} axes (one-dimensional) or {ndim + 1} (..., K, D) "
                     f"expected, got shape {tuple(tags.shape)}")
  return tags


def tag_distance(difference: jax.Array) -> jax.Array:
  """Euclidean length over the last (embedding) axis; for one-dimensional
  tags exactly |d|, and elsewhere with a finite gradient at 0."""
  if difference.shape[-1] == 1:
    return jnp.abs(difference[..., 0])
  squared = jnp.sum(jnp.square(difference), axis=-1)
  return jnp.sqrt(jnp.maximum(squared, 1e-12))


def person_weights(batch: dict[str, jax.Array]) -> jax.Array:
  """(B, P, K) 1 where a real person's joint is annotated."""
  valid = batch["persons_valid"].astype(jnp.float32)[..., None]
  return batch["joints_visible"].astype(jnp.float32) * valid


def scene_targets(batch: dict[str, jax.Array], *, heatmap_size: int, kernel: str = "gaussian",
                  sigma: float = 1.0, radius: float = 5.0, peak: float | None = None
                  ) -> jax.Array:
  """(B, h, w, K): every person's target heatmap, the maximum where they meet."""
  coords = heatmaps.rescale_coordinates(batch["joints"], batch["image"].shape[1], heatmap_size)
  maps = heatmaps.render(coords, person_weights(batch), height=heatmap_size, kernel=kernel,
                         sigma=sigma, radius=radius, peak=peak)  # (B, P, h, w, K)
  return jnp.max(maps, axis=1)


def joint_cells(joints: jax.Array, *, image_size: int, heatmap_size: int) -> jax.Array:
  """(..., K) flat index of the heatmap cell under each joint (clipped to the grid)."""
  coords = heatmaps.rescale_coordinates(joints, image_size, heatmap_size)
  ij = jnp.clip(jnp.round(coords).astype(jnp.int32), 0, heatmap_size - 1)
  return ij[..., 1] * heatmap_size + ij[..., 0]


def tag_losses(tags: jax.Array, batch: dict[str, jax.Array], *, push_kernel: str = "gaussian"
               ) -> tuple[jax.Array, jax.Array]:
  """Pull and push losses of every image's and stack's tag maps.

  Args:
    tags: (B, S, h, w, K) tag maps, or (B, S, h, w, K, D) of D-dimensional tags.
    batch: joints (B, P, K, 2) in input pixels, joints_visible (B, P, K),
      persons_valid (B, P), image (B, H, W, C).
    push_kernel: 'gaussian' (exp(-|d|^2 / 2)) or 'laplace' (exp(-|d|)).

  Returns:
    (pull, push), each (B, S): per image and stack.
  """
  tags = with_embedding_axis(tags, 5)
  b, s, h, w, k, d = tags.shape
  cells = joint_cells(batch["joints"], image_size=batch["image"].shape[1], heatmap_size=h)
  flat = tags.reshape(b, s, h * w, k, d)
  # per_joint[b, s, p, j] = flat[b, s, cells[b, p, j], j]: (B, S, P, K, D)
  index = jnp.broadcast_to(cells[:, None], (b, s) + cells.shape[1:])  # (B, S, P, K)
  per_joint = jnp.take_along_axis(
      jnp.moveaxis(flat, 2, 3)[:, :, None], index[..., None, None], axis=-2)[..., 0, :]
  weight = person_weights(batch)[:, None]  # (B, 1, P, K)
  count = weight.sum(-1)  # (B, 1, P)
  reference = ((per_joint * weight[..., None]).sum(-2)
               / jnp.maximum(count, 1.0)[..., None])  # (B, S, P, D)
  is_person = (count > 0).astype(jnp.float32)  # (B, 1, P)
  persons = is_person.sum(-1)  # (B, 1)
  squared = jnp.sum(jnp.square(per_joint - reference[..., None, :]), axis=-1) * weight
  pull = (squared.sum(-1) / jnp.maximum(count, 1.0) * is_person).sum(-1) / jnp.maximum(persons, 1)
  diff = reference[..., :, None, :] - reference[..., None, :, :]  # (B, S, P, P, D)
  pair = is_person[..., :, None] * is_person[..., None, :] * (1.0 - jnp.eye(reference.shape[-2]))
  pairs = pair.sum((-2, -1))
  if push_kernel not in PUSH_KERNELS:
    raise ValueError(f"tags.push_kernel must be one of {PUSH_KERNELS}, got {push_kernel!r}")
  kernel = (jnp.exp(-0.5 * jnp.sum(jnp.square(diff), axis=-1)) if push_kernel == "gaussian"
            else jnp.exp(-tag_distance(diff)))
  push = (kernel * pair).sum((-2, -1)) / jnp.maximum(pairs, 1.0)
  return pull, push


def tag_config() -> ml_collections.ConfigDict:
  """`config.tags`: the weights of the grouping losses (Newell et al.: 1e-3 each
  beside a heatmap MSE averaged over pixels). An optional `dim` (read as
  `tags.get('dim', 1)`) sets the numbers per joint's tag (Newell et al.: 1)."""
  return ml_collections.ConfigDict({"pull_weight": 1e-3, "push_weight": 1e-3,
                                    "push_kernel": "gaussian"})


def _per_example(config, outputs, batch, squared_error):
  """(B, S) heatmap loss, pull and push of every image and stack."""
  hc = config.heatmap
  target = scene_targets(batch, heatmap_size=config.input.heatmap_size, kernel=hc.target_kernel,
                         sigma=hc.sigma, radius=hc.radius, peak=hc.target_peak)
  maps = outputs[kp.JOINTS.name]
  weight = jnp.ones(maps.shape[:1] + maps.shape[-1:], jnp.float32)
  squared = squared_error(maps, target, weight, foreground_weight=hc.foreground_weight)
  pull, push = tag_losses(outputs[TAGS], batch,
                          push_kernel=config.get("tags", tag_config()).get("push_kernel",
                                                                           "gaussian"))
  return jnp.mean(squared, axis=(2, 3, 4)), pull, push


def losses(config: ml_collections.ConfigDict, outputs: dict[str, jax.Array],
           batch: dict[str, jax.Array], *, squared_error: Callable
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The training objective: per stack heatmap MSE + weighted pull and push,
  summed over stacks.

  Args:
    config: the experiment config (`heatmap`, `input.heatmap_size`, `tags`).
    outputs: the model's {'joints', 'tags'} maps (B, S, h, w, K); tags
      (B, S, h, w, K, D) with `tags.dim` D > 1.
    batch: a scene batch.
    squared_error: the training loop's weighted squared error of heatmaps.

  Returns:
    (total, {'loss_per_stack': (S,), 'pull': (S,), 'push': (S,)}).
  """
  heat, pull, push = (x.mean(0) for x in _per_example(config, outputs, batch, squared_error))
  tags = config.get("tags", tag_config())
  per_stack = heat + tags.pull_weight * pull + tags.push_weight * push
  return jnp.sum(per_stack), {"loss_per_stack": per_stack, "pull": pull, "push": push}


def eval_outputs(config: ml_collections.ConfigDict, outputs: dict[str, jax.Array],
                 batch: dict[str, jax.Array], *, squared_error: Callable) -> dict[str, Any]:
  """What evaluation reads from a (possibly padded) scene batch.

  Returns:
    loss_sum: (S,) per-stack loss summed over the valid images.
    count: number of valid images.
    heatmaps, tags: (B, h, w, K) of the last stack; tags (B, h, w, K, D)
      with `tags.dim` D > 1.
  """
  heat, pull, push = _per_example(config, outputs, batch, squared_error)
  tags = config.get("tags", tag_config())
  per_example = heat + tags.pull_weight * pull + tags.push_weight * push
  valid = batch["valid"].astype(jnp.float32)
  return {"loss_sum": jnp.sum(per_example * valid[:, None], axis=0), "count": jnp.sum(valid),
          "heatmaps": outputs[kp.JOINTS.name][:, -1], "tags": outputs[TAGS][:, -1]}
