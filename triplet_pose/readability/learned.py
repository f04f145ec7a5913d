"""The `learned` stimulation: an encoder trained against a frozen common reader.

Instead of a drawing, a small encoder (`Encoder`: dilated convolutions over
the pose heatmaps, read out at each electrode's pixel) sets the electrode
amplitudes. Only the encoder learns: the reader is the benchmark's frozen
common reader (trained on every drawn representation and plain renderings),
and the simulator is fixed (the forward model of a hybrid neural
autoencoder). It can therefore win only by producing images that look like
what readers have learned to read, not a private code co-adapted with its
own reader.

Its stimulation stays within an implant budget (`representations.
apply_budget`): at most the drawn representations' median number of active
electrodes (top-k) and their median charge per frame (an L1 cap), at the
same phosphene count. The simulator's hard threshold passes a surrogate
gradient (`Options(threshold_gradient='sigmoid')`); its forward pass, and so
its images, are the plain simulator's.

* `learned_config`: the encoder and its training.
* `train_encoder`: the encoder's parameters.
* `encode`: uint8 phosphene images and budgets of keypoints.
"""

from __future__ import annotations

import functools
import gc
import json
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from triplet_pose import heatmaps as hm
from triplet_pose import phosphenes
from triplet_pose.readability import observer as observer_lib
from triplet_pose.readability import representations as reps


def learned_config() -> ml_collections.ConfigDict:
  """The encoder, its training against the frozen reader, and its budget."""
  c = ml_collections.ConfigDict()
  c.features = 16
  c.sigma = 2.0  # pose heatmaps fed to the encoder, in pixels of the observer's images.
  c.steps = 300
  c.batch_size = 32
  c.learning_rate = 3e-3
  # 'both': top-k electrodes and an L1 charge cap; 'l1' or 'topk' alone.
  c.budget = "both"
  return c


class Encoder(nn.Module):
  """Pose heatmaps (B, S, S, K) -> electrode amplitudes (B, N) for `sim`.

  Dilated 3x3 convolutions (dilation 1, 2, 4, 8, 1: a 31-pixel receptive
  field) give one logit map; it is resized to the simulator's resolution
  and read out at each electrode's centre pixel; a sigmoid times
  `stimulus_scale` keeps the amplitudes in a drawn mask's range.
  """
  features: int
  sim: Any  # phosphenes.Simulator; a pytree of arrays held as a constant.

  @nn.compact
  def __call__(self, maps: jax.Array) -> jax.Array:
    x = maps
    for i, dilation in enumerate((1, 2, 4, 8, 1)):
      x = nn.Conv(self.features, (3, 3), kernel_dilation=dilation, name=f"conv{i}")(x)
      x = nn.relu(x)
    logits = nn.Conv(1, (1, 1), name="out")(x)[..., 0]
    h, w = self.sim.resolution
    logits = jax.image.resize(logits, logits.shape[:1] + (h, w), "bilinear")
    values = logits[:, self.sim.centre_rows, self.sim.centre_cols]
    return nn.sigmoid(values) * self.sim.config.stimulus_scale


def pose_heatmaps(points: jax.Array, *, source_size: int, size: int, sigma: float) -> jax.Array:
  """(B, K, 2) keypoints in source pixels -> (B, size, size, K) Gaussian maps."""
  xy = hm.rescale_coordinates(points, source_size, size)
  return hm.render(xy, height=size, sigma=sigma)


def budget_limits(config: ml_collections.ConfigDict, *, charge: float, electrodes: float
                  ) -> dict[str, float | int | None]:
  """The caps `apply_budget` gets from a median budget and `config.budget`."""
  if config.budget not in ("both", "l1", "topk"):
    raise ValueError(f"learned.budget must be 'both', 'l1' or 'topk', got {config.budget!r}")
  return {"charge": float(charge) if config.budget in ("both", "l1") else None,
          "electrodes": int(round(electrodes)) if config.budget in ("both", "topk") else None}


def _amplitude(params, sim, points, charge, *, features: int, size: int, sigma: float,
               source_size: int, electrodes: int | None) -> jax.Array:
  """The encoder's amplitudes within the budget (the simulator is an argument:
  one compilation serves every seed of a phosphene count)."""
  maps = pose_heatmaps(points, source_size=source_size, size=size, sigma=sigma)
  raw = Encoder(features, sim).apply({"params": params}, maps)
  return reps.apply_budget(sim, raw, charge=charge, electrodes=electrodes)


@functools.lru_cache(maxsize=8)
def _init_fn(features: int):
  """The encoder's jitted initialisation (eager, every init kept memory)."""
  return jax.jit(lambda key, maps, sim: Encoder(features, sim).init(key, maps))


@functools.lru_cache(maxsize=8)
def _train_step(key: tuple, optimizer_lr: float):
  """The jitted encoder step of one static setting (cached: compiled once per shape)."""
  features, size, sigma, source_size, electrodes, frames, oc_json = key
  oc = ml_collections.ConfigDict(json.loads(oc_json))
  optimizer = optax.adam(optimizer_lr)
  amplitude = functools.partial(_amplitude, features=features, size=size, sigma=sigma,
                                source_size=source_size, electrodes=electrodes)

  def loss_fn(p, sim, frozen, points, target, charge):
    factor = sim.resolution[0] // size
    images = reps.pool(reps.stimulate(sim, amplitude(p, sim, points, charge), frames=frames),
                       factor)
    maps = observer_lib.frozen_heatmaps(oc, frozen, images)
    return observer_lib.heatmap_loss(maps, target, config=oc, source_size=source_size)

  @jax.jit
  def step(p, opt_state, sim, frozen, points, target, charge):
    loss, grads = jax.value_and_grad(loss_fn)(p, sim, frozen, points, target, charge)
    updates, opt_state = optimizer.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, loss
  return optimizer, step


def train_encoder(sim: phosphenes.Simulator, reader: dict[str, Any], keypoints: np.ndarray,
                  joints: np.ndarray, *, config: ml_collections.ConfigDict,
                  observer_config: ml_collections.ConfigDict, limits: dict[str, Any],
                  frames: int, source_size: int, seed: int,
                  log: Callable[[int, float], None] | None = None) -> dict[str, Any]:
  """Trains the encoder alone against a frozen reader.

  Args:
    sim: the simulator of the phosphene count (built with the surrogate
      threshold gradient: `Options(threshold_gradient='sigmoid')`).
    reader: a trained observer (`observer.train`'s result): frozen.
    keypoints: (N, 42, 2) joints then contour points, source pixels.
    joints: (N, 16, 2) the joints the reader must find.
    config: `learned_config()`.
    observer_config: the reader's config.
    limits: {'charge', 'electrodes'} (`budget_limits`).
    frames: frames of constant stimulation.
    source_size: side of the image the keypoints refer to.
    seed: initialisation and batch order.
    log: log(step, loss) every 50 steps and at the end.

  Returns:
    {'params': the encoder's, 'loss': final loss}.
  """
  oc = observer_config
  maps0 = pose_heatmaps(jnp.zeros((1, 42, 2)), source_size=source_size, size=oc.image_size,
                        sigma=config.sigma)
  params = _init_fn(config.features)(jax.random.PRNGKey(seed), maps0, sim)["params"]
  key = (config.features, oc.image_size, config.sigma, source_size, limits["electrodes"],
         frames, oc.to_json(sort_keys=True))
  optimizer, step = _train_step(key, config.learning_rate)
  opt_state = optimizer.init(params)
  frozen = reader["observer"]
  charge = None if limits["charge"] is None else jnp.float32(limits["charge"])
  rng = np.random.default_rng(seed)
  loss = float("nan")
  for i in range(config.steps):
    index = rng.choice(len(keypoints), config.batch_size,
                       replace=len(keypoints) < config.batch_size)
    params, opt_state, loss = step(params, opt_state, sim, frozen,
                                   jnp.asarray(keypoints[index]), jnp.asarray(joints[index]),
                                   charge)
    if log and ((i + 1) % 50 == 0 or i + 1 == config.steps):
      log(i + 1, float(loss))
  return {"params": params, "loss": float(loss)}


@functools.lru_cache(maxsize=8)
def _jitted_amplitude(features, size, sigma, source_size, electrodes):
  return jax.jit(functools.partial(_amplitude, features=features, size=size, sigma=sigma,
                                   source_size=source_size, electrodes=electrodes))


def encode(sim: phosphenes.Simulator, params: Any, keypoints: np.ndarray, *,
           config: ml_collections.ConfigDict, image_size: int, limits: dict[str, Any],
           frames: int, source_size: int, batch_size: int = 64) -> dict[str, np.ndarray]:
  """`representations.render_amplitudes` of the trained encoder's stimulation."""
  amplitude = _jitted_amplitude(config.features, image_size, config.sigma, source_size,
                                limits["electrodes"])
  charge = None if limits["charge"] is None else jnp.float32(limits["charge"])

  def amplitude_fn(start, stop):
    chunk = np.asarray(keypoints[start:stop], np.float32)
    n = len(chunk)
    padded = np.concatenate([chunk, np.zeros((batch_size - n,) + chunk.shape[1:], np.float32)])
    return amplitude(params, sim, jnp.asarray(padded), charge)[:n]
  return reps.render_amplitudes(sim, amplitude_fn, len(keypoints), frames=frames,
                                factor=sim.resolution[0] // image_size, batch_size=batch_size)


def release_compiled() -> None:
  """Lets go of the compiled encoder steps (hundreds of MB each on a CPU)."""
  _train_step.cache_clear()
  _jitted_amplitude.cache_clear()
  _init_fn.cache_clear()
  gc.collect()
