"""Pose representations for the implant, and their phosphene images.

A representation turns an example (its image and its pose) into an
activation mask at the simulator's resolution; the simulator turns the mask
into what the implant user sees. The registry (`REGISTRY`, in table order):

* `image_edges`: no pose at all, the image's Sobel edges (what
  `launch.phosphenes --mask=edges` does): the baseline of today's
  prosthetic-vision simulations;
* `joints`: joint discs (twice the line width) and skeleton lines;
* `triplet`: the 26 contour points' lines (the thesis's rendering);
* `triplet_joints`: both;
* `silhouette`: filled limbs and torso;
* `triplet_nearest`: the triplet lines, minus those behind a nearer limb
  (`DrawStyle.overlap='nearest'`);
* `triplet_outline`: the triplet lines and limb fills, filled only where
  one limb alone covers the pixel (`overlap='outline'`);
* `learned`: no drawing: an encoder maps the pose heatmaps to electrode
  amplitudes, trained with the observer (`observer.py`).

Phosphene images (`phosphene_images`): the mask is sampled per electrode
(`Simulator.sample_stimulus`, mask 1 = `stimulus_scale` amperes), held for
`frames` frames so that brightness settles, and the last frame is rendered
and average-pooled to the observer's resolution (the simulator renders
point-sampled Gaussians: a finer render, pooled, does not lose the small
foveal phosphenes between pixel centres).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from triplet_pose import phosphenes
from triplet_pose.phosphenes import media

DrawStyle = phosphenes.DrawStyle


@dataclasses.dataclass(frozen=True)
class Representation:
  """One way of showing a person through the implant.

  Attributes:
    name: registry key, the row of the tables.
    description: one line for tables and figures.
    keypoint_sets: the keypoint sets it shows ('joints', 'contour'); empty
      for `image_edges`, which uses the image instead.
    style: how the keypoints are drawn (None: not drawn; see `kind`).
    kind: 'drawn' (a mask from the pose), 'image' (a mask from the image)
      or 'learned' (amplitudes from an encoder, `observer.py`).
  """
  name: str
  description: str
  keypoint_sets: tuple[str, ...]
  style: DrawStyle | None = None
  kind: str = "drawn"

  @property
  def uses_pose(self) -> bool:
    """False when predicted and true poses give the same images (image edges)."""
    return self.kind != "image"


REGISTRY: Mapping[str, Representation] = {r.name: r for r in (
    Representation("image_edges", "Sobel edges of the image (no pose)", (), kind="image"),
    Representation("joints", "joint discs and skeleton lines", ("joints",),
                   DrawStyle(draw_joints=True, draw_skeleton=True)),
    Representation("triplet", "contour lines (the thesis)", ("contour",),
                   DrawStyle(draw_contour=True)),
    Representation("triplet_joints", "contour lines, joints and skeleton",
                   ("joints", "contour"), DrawStyle()),
    Representation("silhouette", "filled limbs and torso", ("contour",),
                   DrawStyle(fill_limbs=True, fill_torso=True)),
    Representation("triplet_nearest", "contour lines, hidden behind nearer limbs",
                   ("contour",), DrawStyle(overlap="nearest")),
    Representation("triplet_outline", "contour lines, limbs filled where alone",
                   ("contour",), DrawStyle(fill_limbs=True, overlap="outline")),
    Representation("learned", "encoder of pose heatmaps -> amplitudes",
                   ("joints", "contour"), kind="learned"),
)}


def get(name: str) -> Representation:
  """The registered representation `name`.

  Raises:
    ValueError: naming the known ones.
  """
  if name not in REGISTRY:
    raise ValueError(f"unknown representation {name!r}; known: {', '.join(REGISTRY)}")
  return REGISTRY[name]


def draw(representation: Representation, batch: Mapping[str, np.ndarray], *,
         image_size: tuple[int, int], output_size: tuple[int, int],
         line_width: float, batch_size: int = 32) -> np.ndarray:
  """Activation masks of a batch of examples.

  Args:
    representation: a drawn or image representation.
    batch: 'joints' (B, 16, 2) and 'contour' (B, 26, 2) in pixels of an
      `image_size` image, and for `image_edges` 'image' (B, h, w[, 3]) uint8
      (any size: it is resized to `output_size`).
    image_size: (H, W) of the image the keypoints refer to.
    output_size: (H, W) of the masks (the simulator's resolution).
    line_width: width of lines in mask pixels; joint discs are twice as wide,
      so a joint stands out from the lines that meet there.
    batch_size: examples drawn at once. Filled limbs and torso take about
      10 MB per example at 128 px while drawn (the polygon tests of every
      pixel): drawn whole, 1,500 silhouettes took 16 GB.

  Returns:
    (B, H, W) float32 masks in [0, 1].

  Raises:
    ValueError: for a learned representation (it has no mask).
  """
  if representation.kind == "image":
    return np.stack([media.frame_to_mask(np.asarray(image), size=tuple(output_size),
                                         kind="edges") for image in batch["image"]])
  if representation.kind != "drawn":
    raise ValueError(f"{representation.name} is not drawn as a mask")
  style = representation.style.replace(line_width=line_width, point_radius=line_width)
  count = len(batch[representation.keypoint_sets[0]])
  out = np.empty((count, *output_size), np.float32)
  for start in range(0, count, batch_size):
    points = {name: jnp.asarray(batch[name][start:start + batch_size])
              for name in representation.keypoint_sets}
    out[start:start + batch_size] = np.asarray(phosphenes.render_pose(
        points, image_size=tuple(image_size), output_size=tuple(output_size), style=style))
  return out


def draw_uint8(representation: Representation, batch: Mapping[str, np.ndarray], *,
               image_size: tuple[int, int], output_size: tuple[int, int],
               line_width: float, batch_size: int = 32) -> np.ndarray:
  """`draw` chunk by chunk into (B, H, W) uint8 masks (1/255 steps).

  What the benchmark keeps: a float copy of a whole split is never made.
  """
  key = "image" if representation.kind == "image" else representation.keypoint_sets[0]
  count = len(batch[key])
  out = np.empty((count, *output_size), np.uint8)
  for start in range(0, count, batch_size):
    chunk = {k: v[start:start + batch_size] for k, v in batch.items()
             if isinstance(v, np.ndarray) and len(v) == count}
    masks = draw(representation, chunk, image_size=image_size, output_size=output_size,
                 line_width=line_width, batch_size=batch_size)
    out[start:start + batch_size] = np.round(np.clip(masks, 0, 1) * 255)
  return out


def build_simulator(num_phosphenes: int, *, seed: int, resolution: int,
                    options: phosphenes.Options = phosphenes.Options()
                    ) -> phosphenes.Simulator:
  """dynaphos' default parameters, phosphenes drawn by cortical magnification.

  The layout and the thresholds (random, as dynaphos draws them) depend on
  `num_phosphenes` and `seed` only, so every representation and `options`
  (the learned encoder's surrogate gradient) see the same electrodes.

  Args:
    num_phosphenes: phosphenes drawn (all fall inside the view).
    seed: seeds the layout and the thresholds.
    resolution: side of the rendered (square) image in pixels.
    options: simulator options (the forward pass does not depend on the
      gradient options).
  """
  params = phosphenes.default_params()
  params["run"]["resolution"] = [int(resolution)] * 2
  k_layout, k_sim = jax.random.split(jax.random.PRNGKey(seed))
  x, y = phosphenes.phosphenes_by_magnification(params, num_phosphenes, key=k_layout)
  return phosphenes.Simulator.create(params, x, y, key=k_sim, options=options)


def pool(images: jax.Array, factor: int) -> jax.Array:
  """Average-pools (..., H, W) images by `factor` (H and W divisible by it)."""
  if factor == 1:
    return images
  *batch, h, w = images.shape
  return images.reshape(*batch, h // factor, factor, w // factor, factor).mean(axis=(-3, -1))


def stimulate(sim: phosphenes.Simulator, amplitude: jax.Array, *, frames: int) -> jax.Array:
  """The image after `frames` frames of constant stimulation (jit-friendly).

  Only the last frame is rendered; the tissue state is carried through the
  earlier ones (a `lax.scan`, so gradients reach `amplitude`).

  Args:
    sim: the simulator.
    amplitude: (..., N) amperes per electrode.
    frames: frames of stimulation (>= 1).

  Returns:
    (..., H, W) phosphene image of the last frame.
  """
  state = sim.init_state(amplitude.shape[:-1])
  state, _ = jax.lax.scan(lambda s, _: (sim.update(s, amplitude)[0], None), state, None,
                          length=frames - 1)
  return sim.render(sim.update(state, amplitude)[1])


# Below this amplitude an electrode counts as off (1% of a drawn mask's 1).
ACTIVE_FRACTION = 0.01
UNITS = {"active_electrodes": "electrodes stimulated at >= 1% of the mask scale (1 uA), "
                              "per frame, mean over test figures",
         "charge_per_frame": "uC per frame: amplitude x pulse width x pulses per frame, "
                             "summed over electrodes, mean over test figures",
         "pckh": "percent", "seconds": "wall seconds"}


def charge_per_frame(sim: phosphenes.Simulator, amplitude: jax.Array) -> jax.Array:
  """(..., N) amperes -> (...) microcoulombs delivered in one frame."""
  c = sim.config
  return jnp.sum(amplitude, axis=-1) * c.pw_default * c.freq_default / c.fps * 1e6


def active_electrodes(sim: phosphenes.Simulator, amplitude: jax.Array) -> jax.Array:
  """(..., N) amperes -> (...) electrodes at or above `ACTIVE_FRACTION` of the scale."""
  on = amplitude >= ACTIVE_FRACTION * sim.config.stimulus_scale
  return jnp.sum(on, axis=-1).astype(jnp.float32)


def apply_budget(sim: phosphenes.Simulator, amplitude: jax.Array, *, charge: float | None,
                 electrodes: int | None) -> jax.Array:
  """Amplitudes within an implant budget (differentiable where not cut).

  Args:
    sim: the simulator (pulse width, frequency, frame rate).
    amplitude: (..., N) amperes.
    charge: microcoulombs per frame at most (an L1 cap: the amplitudes are
      scaled down together); None: no cap.
    electrodes: at most this many electrodes on (top-k: the rest are set to
      zero); None: no limit.
  """
  if electrodes is not None and electrodes < amplitude.shape[-1]:
    # Exactly k on: a threshold at the k-th value would keep every tie (an
    # encoder that saturates ties many electrodes at the full amplitude).
    flat = amplitude.reshape(-1, amplitude.shape[-1])
    _, index = jax.lax.top_k(jax.lax.stop_gradient(flat), max(int(electrodes), 1))
    keep = jax.vmap(lambda row: jnp.zeros(flat.shape[-1], bool).at[row].set(True))(index)
    amplitude = jnp.where(keep.reshape(amplitude.shape), amplitude, 0.0)
  if charge is not None:
    total = charge_per_frame(sim, amplitude)[..., None]
    amplitude = amplitude * jnp.minimum(1.0, charge / jnp.maximum(total, 1e-12))
  return amplitude


@functools.partial(jax.jit, static_argnames=("frames", "factor"))
def _amplitude_to_image(sim, amplitude, *, frames, factor):
  return pool(stimulate(sim, amplitude, frames=frames), factor)


@functools.partial(jax.jit, static_argnames=("charge", "electrodes"))
def _mask_amplitude(sim, masks, *, charge, electrodes):
  amplitude = sim.sample_stimulus(masks, rescale=True)
  return apply_budget(sim, amplitude, charge=charge, electrodes=electrodes)


def to_uint8(images) -> np.ndarray:
  """[0, 1] images -> uint8 (how the benchmark keeps phosphene images)."""
  return np.round(np.clip(np.asarray(images), 0.0, 1.0) * 255).astype(np.uint8)


def render_amplitudes(sim: phosphenes.Simulator, amplitude_fn, count: int, *, frames: int,
                      factor: int, batch_size: int = 64) -> dict[str, np.ndarray]:
  """Phosphene images (uint8) and budgets of `count` stimuli, chunk by chunk.

  Args:
    sim: the simulator.
    amplitude_fn: (start, stop) -> (stop - start, N) amperes of those stimuli.
    count: stimuli.
    frames, factor: as `phosphene_images`.
    batch_size: stimuli simulated at once (padded: one compilation).

  Returns:
    {'images': (count, S, S) uint8, 'active': (count,), 'charge': (count,) uC}.
  """
  images, active, charge = [], [], []
  for start in range(0, count, batch_size):
    amplitude = jnp.asarray(amplitude_fn(start, min(start + batch_size, count)))
    n = len(amplitude)
    padded = jnp.concatenate([amplitude, jnp.zeros((batch_size - n, amplitude.shape[1]),
                                                   amplitude.dtype)])
    images.append(to_uint8(_amplitude_to_image(sim, padded, frames=frames, factor=factor))[:n])
    active.append(np.asarray(active_electrodes(sim, amplitude)))
    charge.append(np.asarray(charge_per_frame(sim, amplitude)))
  return {"images": np.concatenate(images), "active": np.concatenate(active),
          "charge": np.concatenate(charge)}


def render_masks(sim: phosphenes.Simulator, masks: np.ndarray, *, frames: int, factor: int,
                 charge: float | None = None, electrodes: int | None = None,
                 batch_size: int = 64) -> dict[str, np.ndarray]:
  """`render_amplitudes` of uint8 (or [0, 1]) masks, optionally within a budget."""
  def amplitude_fn(start, stop):
    chunk = np.asarray(masks[start:stop])
    chunk = chunk.astype(np.float32) / 255 if chunk.dtype == np.uint8 else chunk
    n = len(chunk)
    padded = np.concatenate([chunk, np.zeros((batch_size - n,) + chunk.shape[1:], np.float32)])
    return _mask_amplitude(sim, jnp.asarray(padded, jnp.float32), charge=charge,
                           electrodes=electrodes)[:n]
  return render_amplitudes(sim, amplitude_fn, len(masks), frames=frames, factor=factor,
                           batch_size=batch_size)


@functools.partial(jax.jit, static_argnames=("frames", "factor"))
def _mask_to_image(sim, masks, *, frames, factor):
  amplitude = sim.sample_stimulus(masks, rescale=True)
  return pool(stimulate(sim, amplitude, frames=frames), factor)


def phosphene_images(sim: phosphenes.Simulator, masks: np.ndarray, *, frames: int,
                     factor: int, batch_size: int = 64) -> np.ndarray:
  """Phosphene images of masks at the simulator's resolution, pooled by `factor`.

  Args:
    sim: the simulator.
    masks: (B, H, W) activation masks in [0, 1].
    frames: frames of constant stimulation before the image is taken.
    factor: average-pooling factor (the observer sees (H/factor, W/factor)).
    batch_size: masks simulated at once (a fixed shape: one compilation).

  Returns:
    (B, H/factor, W/factor) float32 images in [0, 1].
  """
  if frames < 1:
    raise ValueError(f"frames must be >= 1, got {frames}")
  out = []
  for start in range(0, len(masks), batch_size):
    chunk = np.asarray(masks[start:start + batch_size], np.float32)
    n = len(chunk)
    if n < batch_size:
      chunk = np.concatenate([chunk, np.zeros((batch_size - n,) + chunk.shape[1:], np.float32)])
    out.append(np.asarray(_mask_to_image(sim, jnp.asarray(chunk), frames=frames,
                                         factor=factor))[:n])
  return np.concatenate(out)
