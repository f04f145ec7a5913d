"""Per-electrode dynamics of the phosphene model (dynaphos' equations).

Pure functions of a static `Config` (constants derived from the parameters)
and per-frame arrays: effective charge, leaky-integrator tissue activation
and memory trace, brightness saturation, the activation threshold (with an
optional surrogate gradient) and phosphene size. `simulator.py` renders the
result; see its docstring for the equations and the corrections of dynaphos
that `Options` switches.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Mapping

from flax import struct
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Options:
  """The simulator's corrections of dynaphos and its gradient options (hashable).

  The defaults are the corrected behaviour; `Options.dynaphos_compatible()`
  reproduces dynaphos exactly (see the docstring of simulator.py). Pass one
  value to `Simulator.create(..., options=...)`.

  Attributes:
    size_follows: 'activation' (a phosphene keeps its size while the tissue
      stays active) or 'amplitude' (dynaphos: the instantaneous amplitude).
    safe_size_gradient: finite (zero) gradients at zero phosphene size.
    sigmoid_size_microamps: feed the 'sigmoid' size equation microamperes,
      the unit of its constants (dynaphos feeds amperes).
    min_one_substep: run the leaky integrators at least one sub-step per
      frame (dynaphos never updates a trace that does not decay).
    threshold_gradient: 'none' (the exact, almost everywhere zero gradient
      of the hard threshold) or 'sigmoid' (a surrogate gradient).
    surrogate_width: width of the surrogate sigmoid in activation units;
      None: `activation_threshold_sd` of the parameters (or half the
      threshold, or 1e-8), filled in by `Simulator.create`.

  Raises:
    ValueError: for an unknown `size_follows` or `threshold_gradient`, or a
      `surrogate_width` that is not positive.
  """
  size_follows: str = "activation"
  safe_size_gradient: bool = True
  sigmoid_size_microamps: bool = True
  min_one_substep: bool = True
  threshold_gradient: str = "none"
  surrogate_width: float | None = None

  def __post_init__(self):
    if self.size_follows not in ("amplitude", "activation"):
      raise ValueError(f"size_follows must be 'amplitude' or 'activation', "
                       f"got {self.size_follows!r}")
    if self.threshold_gradient not in ("none", "sigmoid"):
      raise ValueError(f"threshold_gradient must be 'none' or 'sigmoid', "
                       f"got {self.threshold_gradient!r}")
    if self.surrogate_width is not None and not self.surrogate_width > 0:
      raise ValueError(f"surrogate_width must be > 0, got {self.surrogate_width}")

  @classmethod
  def dynaphos_compatible(cls, **overrides) -> "Options":
    """dynaphos' behaviour exactly; `overrides` change single fields of it."""
    return cls(**{**dict(size_follows="amplitude", safe_size_gradient=False,
                         sigmoid_size_microamps=False, min_one_substep=False),
                  **overrides})

  def with_surrogate_width(self, params: Mapping[str, Any]) -> "Options":
    """These options with `surrogate_width` filled in from `params` when None."""
    if self.surrogate_width is not None:
      return self
    th = params["thresholding"]
    width = th["activation_threshold_sd"] or 0.5 * th["activation_threshold"] or 1e-8
    return dataclasses.replace(self, surrogate_width=float(width))


@dataclasses.dataclass(frozen=True)
class Config:
  """Static (hashable) constants derived from the parameters."""
  height: int
  width: int
  dtype: str
  fps: float
  rel_duration: float
  activation_decay: float
  activation_steps: int
  trace_a: float
  trace_b: float
  trace_steps: int
  rheobase: float
  pw_default: float
  freq_default: float
  size_equation: str
  current_spread: float
  max_diameter: float
  slope_size: float
  i_half: float
  slope_brightness: float
  cps_half: float
  sampling_method: str
  stimulus_scale: float
  gabor: bool
  gamma: float
  options: Options


@struct.dataclass
class SimulatorState:
  """Tissue state per electrode, shape (*batch, N) each."""
  activation: jax.Array
  trace: jax.Array


@struct.dataclass
class PhospheneFrame:
  """Per-phosphene quantities of one frame, shape (*batch, N) each."""
  charge: jax.Array  # Effective charge per second (A).
  size_current: jax.Array  # Current (A) fed to the size equation.
  sigma: jax.Array  # Gaussian standard deviation (degrees).
  brightness: jax.Array  # Saturated activation in (0, 1).
  intensity: jax.Array  # Brightness where above threshold, else 0.


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _heaviside(x: jax.Array, width: float) -> jax.Array:
  return (x > 0).astype(x.dtype)


@_heaviside.defjvp
def _heaviside_jvp(width, primals, tangents):
  (x,), (t,) = primals, tangents
  s = jax.nn.sigmoid(x / width)
  return _heaviside(x, width), t * s * (1 - s) / width


def _safe_sqrt(x: jax.Array) -> jax.Array:
  ok = x > 0
  return jnp.where(ok, jnp.sqrt(jnp.where(ok, x, 1.0)), 0.0)


def make_config(p: Mapping[str, Any], options: Options) -> Config:
  run, td, ds, size = p["run"], p["temporal_dynamics"], p["default_stim"], p["size"]
  fps = float(run["fps"])
  act_decay = -math.log(td["activation_decay_per_second"])
  trace_decay = -math.log(td["trace_decay_per_second"])
  act_steps = math.ceil(act_decay / fps)
  trace_steps = math.ceil(trace_decay / fps)
  if options.min_one_substep:
    # dynaphos never updates the trace when it does not decay (0 sub-steps).
    act_steps, trace_steps = max(1, act_steps), max(1, trace_steps)
  steps = max(1, trace_steps)
  x64 = jax.config.jax_enable_x64 and run["dtype"] == "float64"
  return Config(
      height=int(run["resolution"][1]), width=int(run["resolution"][0]),
      dtype="float64" if x64 else "float32", fps=fps,
      rel_duration=float(ds["relative_stim_duration"]),
      activation_decay=act_decay, activation_steps=act_steps,
      trace_a=-trace_decay / fps / steps,
      trace_b=ds["relative_stim_duration"] * td["trace_increase_rate"] / fps / steps,
      trace_steps=trace_steps, rheobase=p["thresholding"]["rheobase"],
      pw_default=ds["pw_default"], freq_default=ds["freq_default"],
      size_equation=size["size_equation"], current_spread=size["current_spread"],
      max_diameter=size["MD"], slope_size=size["slope_size"], i_half=size["I_half"],
      slope_brightness=p["brightness_saturation"]["slope_brightness"],
      cps_half=p["brightness_saturation"]["cps_half"],
      sampling_method=p["sampling"]["sampling_method"],
      stimulus_scale=p["sampling"]["stimulus_scale"],
      gabor=bool(p["gabor"]["gabor_filtering"]), gamma=float(p["gabor"]["gamma"]),
      options=options)


def _size(c: Config, current: jax.Array) -> jax.Array:
  """Radius of activated cortex (mm) for a current (A)."""
  if c.size_equation == "sqrt":  # Tehovnik et al. 2007.
    x = current / c.current_spread
    return _safe_sqrt(x) if c.options.safe_size_gradient else jnp.sqrt(x)
  scale = 1e6 if c.options.sigmoid_size_microamps else 1.0  # Bosking et al. 2017.
  return 0.5 * c.max_diameter * jax.nn.sigmoid(c.slope_size * (current * scale - c.i_half))


def update(c: Config, state: SimulatorState, amplitude, pulse_width, frequency, *,
           size_scale: jax.Array, thresholds: jax.Array,
           ) -> tuple[SimulatorState, PhospheneFrame]:
  """One frame of the dynamics for (*batch, N) amplitudes (amperes).

  `size_scale` is radius_to_sigma / magnification (deg/mm) per phosphene;
  `pulse_width` and `frequency` default (None) to the parameters' values.
  """
  dtype = jnp.dtype(c.dtype)
  amplitude = jnp.asarray(amplitude, dtype)
  if amplitude.shape[-1:] != (thresholds.shape[-1],):
    raise ValueError(f"amplitude must be (*batch, {thresholds.shape[-1]}), got {amplitude.shape}")
  pw = c.pw_default if pulse_width is None else jnp.asarray(pulse_width, dtype)
  freq = c.freq_default if frequency is None else jnp.asarray(frequency, dtype)
  charge = jax.nn.relu((amplitude - (state.trace + c.rheobase)) * pw * freq)
  act = state.activation
  for _ in range(c.activation_steps):
    act = act + (-act * c.activation_decay + charge * c.rel_duration) / c.fps / c.activation_steps
  trace = state.trace
  for _ in range(c.trace_steps):
    trace = trace + c.trace_a * trace + c.trace_b * charge
  if c.options.size_follows == "amplitude":
    current = amplitude
  else:
    active = act > 0
    current = jnp.where(active, trace + c.rheobase + jnp.where(active, act, 0.0)
                        * c.activation_decay / (c.rel_duration * pw * freq), 0.0)
  sigma = _size(c, current) * size_scale
  brightness = jax.nn.sigmoid(c.slope_brightness * (act - c.cps_half))
  if c.options.threshold_gradient == "sigmoid":
    intensity = _heaviside(act - thresholds, c.options.surrogate_width) * brightness
  else:
    intensity = jnp.where(act > thresholds, brightness, 0.0)
  frame = PhospheneFrame(charge=charge, size_current=current, sigma=sigma,
                         brightness=brightness, intensity=intensity)
  return SimulatorState(activation=act, trace=trace), frame
