"""The reader of scenes: finds every person's joints in phosphene images.

The single-person observer (`observer.py`) answers one pose; a scene needs
a bottom-up reader. It is the project's associative-embedding model
(`models/associative_embedding.py`: a one-stack hourglass with 16 heatmaps
and 16 tag maps) trained with that model's loss (every person's heatmap
targets, pull and push of the tags) on grey phosphene images, its persons
grouped by `grouping.predict_persons`. The detection threshold and the
fewest joints of a person are picked per reader on training scenes (the
test scenes stay unseen), as `launch.scenes --tune_grouping` does.

* `reader_config`: architecture, schedule, loss weights, grouping.
* `train`, `maps`: a reader and its last-stack heatmaps and tags.
* `tune_grouping`, `persons`: grouping settings, and the persons found.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from triplet_pose import config as config_lib
from triplet_pose import grouping
from triplet_pose import heatmaps as hm
from triplet_pose import keypoints as kp
from triplet_pose import optim
from triplet_pose import train as train_lib
from triplet_pose.evaluators import multi_person
from triplet_pose.models import associative_embedding as ae


def reader_config() -> ml_collections.ConfigDict:
  """The reader's architecture, schedule, loss and grouping (the full grid's)."""
  c = ml_collections.ConfigDict()
  c.image_size = 64  # phosphene images seen by the reader (pooled): 16x16 maps.
  c.num_features = 32
  c.stem_features = 16
  c.hourglass_depth = 2
  c.steps = 600
  c.batch_size = 16
  c.eval_batch_size = 50
  c.heatmap = config_lib.heatmap_config()
  c.heatmap.foreground_weight = 50.0  # as the scenes recipe (configs/scenes.py)
  c.tags = ae.tag_config()
  # The scenes recipe's: the Gaussian push left a small model's tags at zero.
  c.tags.update(pull_weight=0.1, push_weight=0.1, push_kernel="laplace")
  c.optimizer = config_lib.optimizer_config()
  # The observer's rate: on unrendered silhouettes, 300 steps gave mAP 4.4
  # at 2e-2 against 2.7 at 1e-2 (the scenes recipe's).
  c.optimizer.update(learning_rate=2e-2, schedule="warmup_cosine", warmup_steps=20,
                     end_learning_rate_factor=0.3)
  c.grouping = ml_collections.ConfigDict(dataclasses.asdict(grouping.GroupingOptions()))
  # Tried on `tune_scenes` training scenes per reader (the best mAP is kept).
  c.detection_thresholds = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
  c.min_joints = (4, 6, 8)
  c.tune_scenes = 64
  return c


def create_reader(config: ml_collections.ConfigDict) -> ae.AssociativeEmbedding:
  return ae.AssociativeEmbedding(num_stacks=1, num_features=config.num_features,
                                 hourglass_depth=config.hourglass_depth,
                                 stem_features=config.stem_features,
                                 tag_dim=ae.tag_dim(config.tags))


def _loss_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The sections `associative_embedding.losses` reads."""
  return ml_collections.ConfigDict({
      "heatmap": config.heatmap.to_dict(), "tags": config.tags.to_dict(),
      "input": {"heatmap_size": config.image_size // 4}})


def _batch(images, persons: dict[str, jax.Array], source_size: int) -> dict[str, jax.Array]:
  """A scene batch of the reader's images: joints in their pixels."""
  size = images.shape[1]
  return {"image": images.astype(jnp.float32)[..., None] / 255.0,
          "joints": hm.rescale_coordinates(persons["joints"], source_size, size),
          "joints_visible": persons["joints_visible"],
          "persons_valid": persons["persons_valid"]}


def _key(config: ml_collections.ConfigDict) -> str:
  return config.to_json(sort_keys=True)


@functools.lru_cache(maxsize=4)
def _init_fn(config_key: str):
  """The jitted initialisation, compiled without backend optimisation (as
  `train.create_train_state`: the same values, compiled in half the time)."""
  config = ml_collections.ConfigDict(json.loads(config_key))
  model = create_reader(config)
  x = jnp.zeros((1, config.image_size, config.image_size, 1))
  lowered = jax.jit(lambda key, x: model.init(key, x, train=False)).lower(
      jax.random.PRNGKey(0), x)
  compiled = lowered.compile({"xla_backend_optimization_level": 0})
  return lambda seed: compiled(jax.random.PRNGKey(seed), x)


@functools.lru_cache(maxsize=4)
def _train_step(config_key: str, source_size: int):
  """The jitted train step of a config, built once (every cell reuses it)."""
  config = ml_collections.ConfigDict(json.loads(config_key))
  model, loss_config = create_reader(config), _loss_config(config)
  optimizer = optim.create_optimizer(config.optimizer, config.steps)

  def loss_fn(params, batch_stats, batch):
    out, updates = model.apply({"params": params, "batch_stats": batch_stats}, batch["image"],
                               train=True, mutable=["batch_stats"])
    loss, _ = ae.losses(loss_config, out, batch, squared_error=train_lib.squared_error)
    return loss, updates["batch_stats"]

  @jax.jit
  def step(params, batch_stats, opt_state, images, persons):
    batch = _batch(images, persons, source_size)
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, batch_stats, batch)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), batch_stats, opt_state, loss
  return optimizer, step


PERSON_KEYS = ("joints", "joints_visible", "persons_valid")


def train(images: np.ndarray, split: dict[str, np.ndarray], *, config: ml_collections.ConfigDict,
          seed: int, source_size: int, log: Callable[[int, float], None] | None = None
          ) -> dict[str, Any]:
  """Trains a reader of (N, S, S) uint8 phosphene images of a split's scenes.

  Args:
    images: the scenes' phosphene images.
    split: their persons (`scenes_data.make_split`), in `source_size` pixels.
    config: `reader_config()`.
    seed: initialisation and batch order.
    source_size: side of the scenes the keypoints refer to.
    log: log(step, loss) every 50 steps and at the end.

  Returns:
    {'variables': the model's variables, 'loss': the final loss}.
  """
  variables = _init_fn(_key(config))(seed)
  params, batch_stats = variables["params"], variables["batch_stats"]
  optimizer, step = _train_step(_key(config), int(source_size))
  opt_state = optimizer.init(params)
  rng = np.random.default_rng(seed)
  loss = float("nan")
  for i in range(config.steps):
    index = rng.choice(len(images), config.batch_size, replace=len(images) < config.batch_size)
    params, batch_stats, opt_state, loss = step(
        params, batch_stats, opt_state, jnp.asarray(images[index]),
        {k: jnp.asarray(split[k][index]) for k in PERSON_KEYS})
    if log and ((i + 1) % 50 == 0 or i + 1 == config.steps):
      log(i + 1, float(loss))
  return {"variables": {"params": params, "batch_stats": batch_stats}, "loss": float(loss)}


@functools.lru_cache(maxsize=4)
def _maps_fn(config_key: str):
  model = create_reader(ml_collections.ConfigDict(json.loads(config_key)))

  @jax.jit
  def run(variables, images):
    out = model.apply(variables, images.astype(jnp.float32)[..., None] / 255.0, train=False)
    return out[kp.JOINTS.name][:, -1], out[ae.TAGS][:, -1]
  return run


def maps(reader: dict[str, Any], images: np.ndarray, *, config: ml_collections.ConfigDict
         ) -> tuple[np.ndarray, np.ndarray]:
  """The reader's last-stack (N, h, w, 16) heatmaps and tags (N, h, w, 16[, D])
  of uint8 images."""
  run, batch = _maps_fn(_key(config)), config.eval_batch_size
  heat, tags = [], []
  for start in range(0, len(images), batch):
    chunk = np.asarray(images[start:start + batch])
    n = len(chunk)
    if n < batch:  # a fixed shape: one compilation
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, axis=0)])
    h, t = run(reader["variables"], jnp.asarray(chunk))
    heat.append(np.asarray(h)[:n])
    tags.append(np.asarray(t)[:n])
  return np.concatenate(heat), np.concatenate(tags)


def options(config: ml_collections.ConfigDict, **chosen) -> grouping.GroupingOptions:
  """The config's grouping options, with `chosen` fields replaced."""
  return grouping.GroupingOptions.from_config(config, **chosen)


def persons(found: tuple[np.ndarray, np.ndarray], *, source_size: int,
            grouping_options: grouping.GroupingOptions) -> list[np.ndarray]:
  """Each scene's persons (P, 16, 3) in source pixels from `maps`' output."""
  return grouping.predict_persons(*found, image_size=source_size, options=grouping_options)


def tune_grouping(found: tuple[np.ndarray, np.ndarray], batch: dict[str, np.ndarray], *,
                  config: ml_collections.ConfigDict, source_size: int) -> dict[str, Any]:
  """The detection threshold and fewest joints of the best mAP on training scenes.

  Args:
    found: `maps` of the scenes of `batch`.
    batch: `scenes_data.scoring_batch` of the same scenes.
    config: `reader_config()` (the settings tried).
    source_size: side of the scenes.

  Returns:
    {'detection_threshold', 'min_joints', 'map'} of the best setting.
  """
  tried = []
  for threshold, fewest in itertools.product(config.detection_thresholds, config.min_joints):
    metric = multi_person.MultiPersonAp()
    metric.update(batch, {"persons": persons(found, source_size=source_size,
                                             grouping_options=options(
                                                 config, detection_threshold=threshold,
                                                 min_joints=fewest))})
    tried.append({"detection_threshold": float(threshold), "min_joints": int(fewest),
                  "map": float(np.nan_to_num(metric.report()["map"], nan=-1.0))})
  return max(tried, key=lambda t: t["map"])  # the first of equal maps: the lowest threshold
