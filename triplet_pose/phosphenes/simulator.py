"""A differentiable, vectorised phosphene simulator: dynaphos' model in JAX.

Per frame and electrode (van der Grinten et al., eLife 2024):

  charge     = relu((amplitude - trace - rheobase) * pulse_width * frequency)
  activation += (-decay * activation + rel_duration * charge) / fps
  trace      += (-trace_decay * trace + rel_duration * trace_rate * charge) / fps
  brightness = sigmoid(slope * (activation - cps_half))
  sigma      = size(current) * radius_to_sigma / magnification   (degrees)
  image      = clip(sum_n [activation_n > threshold_n] brightness_n
                    * exp(-|p - c_n|^2 / (2 sigma_n^2)), 0, 1)

(the integrators take ceil(decay / fps) sub-steps, as dynaphos). Unlike
dynaphos, the state is not detached between frames, so gradients flow
through time (`run` is a `lax.scan`), and the image is a separable matrix
product rather than an N x H x W tensor (see rendering.py). `Simulator` is a
pytree: pass it through `jax.jit`, `vmap` or `grad` like any array.

Corrections of dynaphos, each a field of `Options` whose default is the
corrected behaviour (`Options.dynaphos_compatible()` restores dynaphos
exactly):
  * safe_size_gradient: sqrt(0) in the size equation and sigma = 0 in the
    Gaussian give NaN gradients; a zero-size phosphene now renders nothing
    and has finite (zero) gradients.
  * size_follows: dynaphos sizes a phosphene by the instantaneous
    amplitude, so it vanishes the frame stimulation stops although tissue
    activation (and brightness) persists. 'activation' sizes it by the
    amplitude that would hold the tissue at its current activation:
    trace + rheobase + activation * decay / (rel_duration * pw * freq).
  * sigmoid_size_microamps: the 'sigmoid' size equation's constants are in
    microamperes but dynaphos feeds it amperes (a flat sigma); the current
    is converted to microamperes.
  * min_one_substep: dynaphos takes ceil(decay / fps) integrator sub-steps,
    0 for a trace that does not decay, which then never grows; at least one.
  * No global side effects in either mode: no global seeding or
    determinism switches (randomness comes from an explicit key, else from
    `run.seed`), and the caller's coordinates are never modified.
The hard activation threshold has zero gradient almost everywhere;
`Options(threshold_gradient='sigmoid')` keeps the hard forward pass but
back-propagates the derivative of sigmoid((activation - threshold) /
surrogate_width) (a surrogate gradient, as in spiking networks).
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

from flax import struct
import jax
import jax.numpy as jnp
import numpy as np

from triplet_pose.phosphenes import dynamics
from triplet_pose.phosphenes import layout
from triplet_pose.phosphenes import params as params_lib
from triplet_pose.phosphenes import rendering
from triplet_pose.phosphenes import sampling
from triplet_pose.phosphenes.dynamics import Options
from triplet_pose.phosphenes.dynamics import PhospheneFrame
from triplet_pose.phosphenes.dynamics import SimulatorState


@struct.dataclass
class Simulator:
  """Phosphene simulator for a fixed set of phosphenes (a pytree).

  Build it with `Simulator.create`. Arrays: phosphene centres `x_deg`,
  `y_deg` (N,), `magnification` (mm/deg), `thresholds` (activation units),
  `theta` (Gabor orientation or None), pixel grids, sampling geometry, and
  `kept` (which of the coordinates given to `create` are simulated).
  """
  x_deg: jax.Array
  y_deg: jax.Array
  magnification: jax.Array
  size_scale: jax.Array
  thresholds: jax.Array
  theta: jax.Array | None
  grid_x: jax.Array
  grid_y: jax.Array
  centre_rows: jax.Array
  centre_cols: jax.Array
  window_rows: jax.Array | None
  window_cols: jax.Array | None
  window_inside: jax.Array | None
  kept: jax.Array
  config: dynamics.Config = struct.field(pytree_node=False)

  @classmethod
  def create(cls, params: Mapping[str, Any], x_deg, y_deg, thresholds=None,
             key: jax.Array | None = None, *, theta=None,
             remove_out_of_view: bool = True,
             options: Options = Options()) -> "Simulator":
    """Builds a simulator for phosphenes at (x_deg, y_deg).

    Args:
      params: parameters (a dict or path, see `load_params`).
      x_deg, y_deg: phosphene centres in degrees of visual angle, (n,).
        Not modified.
      thresholds: per-phosphene activation thresholds, (n,) or (N,) for
        the phosphenes kept; clipped at 0. Default: drawn from
        N(activation_threshold, activation_threshold_sd), clipped at 0.
        Must be None when thresholding.use_threshold is false (all 0 then).
      key: PRNG key for thresholds and Gabor orientations; default
        `PRNGKey(run.seed)`.
      theta: Gabor orientations (radians), (n,) or (N,); default uniform.
      remove_out_of_view: drop phosphenes outside the view (as dynaphos).
      options: the corrections of dynaphos and gradient options (`Options`;
        `Options.dynaphos_compatible()` reproduces dynaphos exactly).

    Returns:
      The simulator.

    Raises:
      ValueError: for bad coordinates, thresholds or theta.
    """
    p = params_lib.load_params(params)
    options = options.with_surrogate_width(p)
    th = p["thresholding"]

    x64 = np.array(x_deg, np.float64)  # Copies: the caller's arrays stay intact.
    y64 = np.array(y_deg, np.float64)
    if x64.ndim != 1 or x64.shape != y64.shape:
      raise ValueError(f"x_deg and y_deg must be 1-D of equal length, got "
                       f"{x64.shape} and {y64.shape}")
    n_in = x64.shape[0]
    kept = (layout.in_view(x64, y64, p["run"]) if remove_out_of_view
            else np.ones(n_in, bool))
    x64, y64 = x64[kept], y64[kept]
    n = x64.shape[0]

    def per_phosphene(value, name):
      value = np.asarray(value, np.float64).ravel()
      if value.shape[0] == n:
        return value
      if value.shape[0] == n_in:
        return value[kept]
      raise ValueError(f"{name} must have {n_in} (given) or {n} (kept) entries, "
                       f"got {value.shape[0]}")

    key = jax.random.PRNGKey(p["run"]["seed"]) if key is None else key
    k_threshold, k_theta = jax.random.split(key)
    if not th["use_threshold"]:
      if thresholds is not None:
        raise ValueError("thresholds given but thresholding.use_threshold is false")
      thr = np.zeros(n)
    elif thresholds is not None:
      thr = per_phosphene(thresholds, "thresholds")
    else:
      thr = (np.asarray(jax.random.normal(k_threshold, (n,)), np.float64)
             * th["activation_threshold_sd"] + th["activation_threshold"])
    thr = np.clip(thr, 0, None)

    gabor = bool(p["gabor"]["gabor_filtering"])
    gamma = float(p["gabor"]["gamma"])
    if theta is not None and not gabor:
      raise ValueError("theta given but gabor.gabor_filtering is false")
    if gabor:
      theta = (per_phosphene(theta, "theta") if theta is not None else
               2 * np.pi * np.asarray(jax.random.uniform(k_theta, (n,)), np.float64))
      theta = theta.astype(np.float32)

    # float32 arithmetic as in dynaphos (ties and RF borders match).
    f32 = np.float32
    x32, y32 = x64.astype(f32), y64.astype(f32)
    r32 = np.hypot(x64, y64).astype(f32)
    cm = p["cortex_model"]
    if cm["model"] == "monopole":
      mag = f32(cm["k"]) / (r32 + f32(cm["a"]))
    else:
      mag = f32(cm["k"]) * (f32(1) / (r32 + f32(cm["a"])) - f32(1) / (r32 + f32(cm["b"])))
    grid_x, grid_y = rendering.pixel_grid(p["run"])
    field = rendering.Field(x32, y32, grid_x, grid_y, theta=theta, gamma=gamma)
    rows, cols = sampling.nearest_pixels(field)
    windows = (None, None, None)
    if p["sampling"]["sampling_method"] == "receptive_fields":
      windows = sampling.receptive_field_windows(
          field, f32(p["sampling"]["RF_size"]) / mag, rows, cols)

    config = dynamics.make_config(p, options)
    dtype = jnp.dtype(config.dtype)
    asarr = lambda a: None if a is None else jnp.asarray(a)
    return cls(
        x_deg=jnp.asarray(x32, dtype), y_deg=jnp.asarray(y32, dtype),
        magnification=jnp.asarray(mag, dtype),
        size_scale=jnp.asarray(f32(p["size"]["radius_to_sigma"]) / mag, dtype),
        thresholds=jnp.asarray(thr.astype(f32), dtype),
        theta=None if theta is None else jnp.asarray(theta, dtype),
        grid_x=jnp.asarray(grid_x, dtype), grid_y=jnp.asarray(grid_y, dtype),
        centre_rows=jnp.asarray(rows), centre_cols=jnp.asarray(cols),
        window_rows=asarr(windows[0]), window_cols=asarr(windows[1]),
        window_inside=asarr(windows[2]), kept=jnp.asarray(kept), config=config)

  @property
  def num_phosphenes(self) -> int:
    return self.x_deg.shape[0]

  @property
  def resolution(self) -> tuple[int, int]:
    """(H, W) of the rendered images."""
    return self.config.height, self.config.width

  def init_state(self, batch_shape: tuple[int, ...] = ()) -> SimulatorState:
    """Zero activation and trace of shape (*batch_shape, N)."""
    zeros = jnp.zeros(tuple(batch_shape) + (self.num_phosphenes,), self.config.dtype)
    return SimulatorState(activation=zeros, trace=zeros)

  def update(self, state: SimulatorState, amplitude, pulse_width=None,
             frequency=None) -> tuple[SimulatorState, PhospheneFrame]:
    """Advances the tissue state by one frame (no rendering).

    Args:
      state: the previous state, (*batch, N) arrays.
      amplitude: (*batch, N) stimulation amplitudes in amperes.
      pulse_width: seconds, broadcastable to amplitude; default pw_default.
      frequency: hertz, broadcastable to amplitude; default freq_default.

    Returns:
      (new state, per-phosphene quantities of this frame).
    """
    return _update(self, state, amplitude, pulse_width, frequency)

  def render(self, frame: PhospheneFrame) -> jax.Array:
    """Renders (*batch, N) phosphene sizes and intensities to (*batch, H, W)."""
    c = self.config
    compat = not c.options.safe_size_gradient
    field = rendering.Field(self.x_deg, self.y_deg, self.grid_x, self.grid_y,
                            theta=self.theta, gamma=c.gamma)
    if c.gabor:
      return rendering.render_dense(field, frame.sigma, frame.intensity,
                                    dynaphos_compatible=compat)
    return rendering.render_separable(field, frame.sigma, frame.intensity,
                                      dynaphos_compatible=compat)

  def step(self, state: SimulatorState, amplitude, pulse_width=None,
           frequency=None) -> tuple[SimulatorState, jax.Array]:
    """One frame: `update` then `render`. Returns (new state, (*batch, H, W))."""
    return _step(self, state, amplitude, pulse_width, frequency)

  def run(self, amplitudes, state: SimulatorState | None = None, *,
          pulse_width=None, frequency=None, return_state: bool = False):
    """Simulates a sequence with `lax.scan`; differentiable through time.

    Args:
      amplitudes: (T, *batch, N) amperes.
      state: initial state; default zeros.
      pulse_width, frequency: None, or broadcastable to `amplitudes`.
      return_state: also return the final state.

    Returns:
      images (T, *batch, H, W), and the final state if `return_state`.
    """
    amplitudes = jnp.asarray(amplitudes, self.config.dtype)
    if amplitudes.ndim < 2:
      raise ValueError(f"amplitudes must be (T, *batch, N), got {amplitudes.shape}")
    if state is None:
      state = self.init_state(amplitudes.shape[1:-1])
    bcast = lambda v: None if v is None else jnp.broadcast_to(
        jnp.asarray(v, self.config.dtype), amplitudes.shape)
    final, images = _run(self, state, amplitudes, bcast(pulse_width), bcast(frequency))
    return (images, final) if return_state else images

  def sample_stimulus(self, mask, rescale: bool = False) -> jax.Array:
    """Amplitude per phosphene from an activation mask, as dynaphos.

    Args:
      mask: (*batch, H, W) image. uint8 masks, and numpy masks whose maximum
        exceeds 1 (dynaphos' rule), are scaled by 1/255.
      rescale: multiply by `sampling.stimulus_scale` (amperes per unit);
        otherwise the mask values are amperes.

    Returns:
      (*batch, N): the mask at the centre pixel ('center') or its maximum
      within the receptive field ('receptive_fields').
    """
    h, w = self.resolution
    if getattr(mask, "shape", (None,))[-2:] != (h, w):
      raise ValueError(f"mask must be (*batch, {h}, {w}), got {getattr(mask, 'shape', None)}")
    scale = mask.dtype == np.uint8 or (isinstance(mask, np.ndarray) and mask.size
                                      and mask.max() > 1)
    return _sample(self, jnp.asarray(mask, self.config.dtype), bool(scale), bool(rescale))

  def sample_pixels(self) -> sampling.SamplePixels:
    """The mask pixels `sample_stimulus` reads (host code: not under `jit`)."""
    windows = ((self.window_rows, self.window_cols, self.window_inside)
               if self.config.sampling_method == "receptive_fields" else ())
    return sampling.sample_pixels(self.centre_rows, self.centre_cols, *windows,
                                  resolution=self.resolution,
                                  stimulus_scale=self.config.stimulus_scale)

  def frame(self, state: SimulatorState, amplitude, pulse_width=None,
            frequency=None) -> PhospheneFrame:
    """The per-phosphene quantities `update` would produce (convenience)."""
    return self.update(state, amplitude, pulse_width, frequency)[1]


@jax.jit
def _update(sim: Simulator, state: SimulatorState, amplitude, pulse_width,
            frequency) -> tuple[SimulatorState, PhospheneFrame]:
  return dynamics.update(sim.config, state, amplitude, pulse_width, frequency,
                         size_scale=sim.size_scale, thresholds=sim.thresholds)


@jax.jit
def _step(sim, state, amplitude, pulse_width, frequency):
  state, frame = _update(sim, state, amplitude, pulse_width, frequency)
  return state, sim.render(frame)


@jax.jit
def _run(sim, state, amplitudes, pulse_width, frequency):
  def body(carry, xs):
    a, pw, f = xs
    return _step(sim, carry, a, pw, f)
  return jax.lax.scan(body, state, (amplitudes, pulse_width, frequency))


@functools.partial(jax.jit, static_argnums=(2, 3))
def _sample(sim: Simulator, mask: jax.Array, scale_255: bool, rescale: bool):
  if scale_255:
    mask = mask * (1 / 255)
  if sim.config.sampling_method == "center":
    values = sampling.sample_centres(mask, sim.centre_rows, sim.centre_cols)
  else:
    values = sampling.sample_windows(mask, sim.window_rows, sim.window_cols,
                                     sim.window_inside)
  return values * sim.config.stimulus_scale if rescale else values
