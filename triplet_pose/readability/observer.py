"""The computational observer: a reader of phosphene images.

The observer stands in for the implant user: a small stacked hourglass
(`models.hourglass`) that sees phosphene images alone and must find the 16
joints. How well it learns to (PCKh on held-out figures) measures how much of
the pose a representation carries through the implant. Every reader has the
same architecture and schedule (`observer_config`); the benchmark trains
one per cell (the `ideal` protocol) or one on a mix of every representation
(the `common` reader, then frozen).

Training and prediction share one "front end" abstraction: a function of
(front parameters, per-example inputs) -> phosphene images. Benchmark
images are precomputed (uint8) and the front end is the identity.

* `train`, `predict`: a reader's training and its joints.
* `heatmap_loss`, `frozen_heatmaps`: what `learned.py` trains its encoder
  against (a frozen reader).
"""

from __future__ import annotations

import functools
import json
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from triplet_pose import config as config_lib
from triplet_pose import heatmaps as hm
from triplet_pose import keypoints as kp
from triplet_pose import optim
from triplet_pose.models.hourglass import StackedHourglass

FrontFn = Callable[[Any, jax.Array], jax.Array]


def observer_config() -> ml_collections.ConfigDict:
  """The observer (and encoder) architecture and training schedule."""
  c = ml_collections.ConfigDict()
  c.image_size = 64  # phosphene images seen by the observer (pooled).
  c.num_features = 32
  c.stem_features = 16
  c.hourglass_depth = 2  # 16x16 heatmaps for 64 px images.
  c.steps = 400
  c.batch_size = 32
  c.eval_batch_size = 100
  c.sigma = 1.0  # target width in heatmap cells.
  c.foreground_weight = 50.0  # heatmap pixels weigh 1 + w * target (as the demo).
  c.optimizer = config_lib.optimizer_config()
  # Unrendered joint masks, 1500 figures, 600 steps: PCKh 0.84 at 2e-2
  # (0.66 at 1e-2 after 400 steps of batch 16).
  c.optimizer.learning_rate = 2e-2
  c.optimizer.schedule = "warmup_cosine"
  c.optimizer.warmup_steps = 20
  c.optimizer.end_learning_rate_factor = 0.05
  return c


def create_observer(config: ml_collections.ConfigDict) -> StackedHourglass:
  """A one-stack hourglass from grey phosphene images to 16 joint heatmaps."""
  return StackedHourglass(num_stacks=1, num_features=config.num_features,
                          num_keypoints=kp.NUM_JOINTS,
                          hourglass_depth=config.hourglass_depth,
                          stem_features=config.stem_features, output_key="joints")


def identity_front(params, images):
  """The front end of precomputed phosphene images (uint8: 1/255 steps)."""
  del params
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) / 255.0
  return images.astype(jnp.float32)


def _observe(observer, variables, images, train):
  out = observer.apply(variables, images[..., None], train=train,
                       mutable=["batch_stats"] if train else False)
  out, updates = out if train else (out, None)
  return out["joints"][:, -1], updates


def heatmap_loss(maps: jax.Array, joints: jax.Array, *, config, source_size: int) -> jax.Array:
  """Weighted squared error of (B, h, w, 16) heatmaps against the joints' targets."""
  size = maps.shape[1]
  target = hm.render(hm.rescale_coordinates(joints, source_size, size), height=size,
                     sigma=config.sigma)
  squared = jnp.square(maps - target) * (1.0 + config.foreground_weight * target)
  return jnp.mean(squared)


def frozen_heatmaps(config: ml_collections.ConfigDict, observer_variables, images: jax.Array
                    ) -> jax.Array:
  """A trained observer's heatmaps of (B, S, S) images (inference mode, no update)."""
  maps, _ = _observe(create_observer(config), observer_variables, images, False)
  return maps


def _loss(params, batch_stats, images_in, joints, *, observer, front, config, source_size):
  images = front(params["front"], images_in)
  maps, updates = _observe(observer, {"params": params["observer"],
                                      "batch_stats": batch_stats}, images, True)
  return heatmap_loss(maps, joints, config=config, source_size=source_size), \
      updates["batch_stats"]


def _frozen(config: ml_collections.ConfigDict) -> str:
  """A hashable key of a config (jitted functions are cached per config)."""
  return config.to_json(sort_keys=True)


@functools.lru_cache(maxsize=16)
def _init_fn(config_key: str):
  """The observer's jitted initialisation (run eagerly, every init kept ~30 MB)."""
  observer = create_observer(ml_collections.ConfigDict(json.loads(config_key)))
  return jax.jit(lambda key, x: observer.init(key, x, train=False))


@functools.lru_cache(maxsize=16)
def _train_step(config_key: str, front: FrontFn, source_size: int):
  """The jitted train step of a config and front end, built once.

  Cached so that every cell of the same shapes reuses one compilation (the
  hourglass takes far longer to compile on a CPU than a cell takes to train).
  """
  config = ml_collections.ConfigDict(json.loads(config_key))
  observer = create_observer(config)
  optimizer = optim.create_optimizer(config.optimizer, config.steps)
  loss_fn = functools.partial(_loss, observer=observer, front=front, config=config,
                              source_size=source_size)

  @jax.jit
  def step(params, batch_stats, opt_state, x, y):
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, batch_stats, x, y)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), batch_stats, opt_state, loss
  return optimizer, step


def train(inputs: np.ndarray, joints: np.ndarray, *, config: ml_collections.ConfigDict,
          seed: int, source_size: int, front: FrontFn = identity_front,
          front_params: Any = None, log: Callable[[int, float], None] | None = None
          ) -> dict[str, Any]:
  """Trains an observer (and the front end's parameters) to find the joints.

  Args:
    inputs: (N, ...) per-example inputs of `front` (phosphene images
      (N, S, S) for drawn representations).
    joints: (N, 16, 2) true joints in pixels of a `source_size` image.
    config: `observer_config()`.
    seed: initialisation and batch order.
    source_size: side of the image the joints refer to.
    front: (front params, inputs batch) -> (B, S, S) phosphene images.
    front_params: its initial parameters (None: it has none).
    log: called as log(step, loss) every 50 steps and at the end.

  Returns:
    {'observer': variables, 'front': front params, 'loss': final loss}.
  """
  sample = front(front_params, jnp.asarray(inputs[:1]))
  variables = _init_fn(_frozen(config))(jax.random.PRNGKey(seed), sample[..., None])
  params = {"observer": variables["params"], "front": front_params or {}}
  batch_stats = variables["batch_stats"]
  optimizer, step = _train_step(_frozen(config), front, int(source_size))
  opt_state = optimizer.init(params)
  rng = np.random.default_rng(seed)
  loss = float("nan")
  for i in range(config.steps):
    index = rng.choice(len(inputs), config.batch_size, replace=len(inputs) < config.batch_size)
    params, batch_stats, opt_state, loss = step(
        params, batch_stats, opt_state, jnp.asarray(inputs[index]),
        jnp.asarray(joints[index]))
    if log and ((i + 1) % 50 == 0 or i + 1 == config.steps):
      log(i + 1, float(loss))
  return {"observer": {"params": params["observer"], "batch_stats": batch_stats},
          "front": params["front"], "loss": float(loss)}


@functools.lru_cache(maxsize=16)
def _predict_fn(config_key: str, front: FrontFn, source_size: int):
  observer = create_observer(ml_collections.ConfigDict(json.loads(config_key)))

  @jax.jit
  def run(trained, x):
    images = front(trained["front"], x)
    maps, _ = _observe(observer, trained["observer"], images, False)
    return hm.decode_to_pixels(maps, source_size)[0], images
  return run


def predict(trained: dict[str, Any], inputs: np.ndarray, *, config: ml_collections.ConfigDict,
            source_size: int, front: FrontFn = identity_front
            ) -> tuple[np.ndarray, np.ndarray]:
  """The observer's joints, and the phosphene images it saw.

  Args:
    trained: the result of `train`.
    inputs: (N, ...) inputs of `front`.
    config, source_size, front: as given to `train`.

  Returns:
    joints (N, 16, 2) in source pixels (heatmap argmax with the quarter-cell
    shift, `heatmaps.decode`), and images (N, S, S) float32.
  """
  run = _predict_fn(_frozen(config), front, int(source_size))
  batch = config.eval_batch_size
  joints, images = [], []
  for start in range(0, len(inputs), batch):
    chunk = np.asarray(inputs[start:start + batch])
    n = len(chunk)
    if n < batch:  # a fixed shape: one compilation
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, axis=0)])
    j, im = run(trained, jnp.asarray(chunk))
    joints.append(np.asarray(j)[:n])
    images.append(np.asarray(im)[:n])
  return np.concatenate(joints), np.concatenate(images)
