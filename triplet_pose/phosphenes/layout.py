"""Phosphene layouts: where in the visual field each electrode's phosphene lies.

Visuotopic maps between the visual field (complex z = x + iy, degrees) and
the cortex (complex w, millimetres), as in dynaphos and Polimeni et al.
(2006): monopole `w = k log(1 + z/a)`, dipole
`w = k log(b (z + a) / (a (z + b)))`, and wedge-dipole (the dipole after
compressing the polar angle by `alpha`). Both directions, the cortical
magnification (mm of cortex per degree), electrode grids on the cortex with
position noise and dropout for one or both hemifields, sampling of
phosphene positions by cortical magnification, explicit coordinate lists,
and the removal of phosphenes outside the simulated view.

The maps accept numpy or jax arrays (and stay differentiable with jax);
everything that draws random numbers takes an explicit `jax.random` key and
touches no global state. Layout functions return a `Layout` whose `kept`
mask says which input electrodes survived dropout and the view test.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import yaml


class Layout(NamedTuple):
  """Phosphene positions in degrees and the mask of kept input electrodes.

  `kept` has the shape of the input electrode list (a leading axis of 2 for
  both hemifields: left, right); `x_deg[i], y_deg[i]` belong to the i-th
  True entry of `kept` in row-major order.
  """
  x_deg: np.ndarray
  y_deg: np.ndarray
  kept: np.ndarray


def _xp(*arrays):
  return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def _model(cortex_params: Mapping[str, Any]):
  model = cortex_params["model"]
  if model not in ("monopole", "dipole", "wedge-dipole"):
    raise ValueError("cortex_model.model must be 'monopole', 'dipole' or "
                     f"'wedge-dipole', got {model!r}")
  return (model, float(cortex_params["k"]), float(cortex_params["a"]),
          float(cortex_params["b"]), float(cortex_params["alpha"]))


def visual_field_to_cortex(z, cortex_params: Mapping[str, Any]):
  """Maps visual-field positions z (complex, degrees) to cortex w (mm)."""
  xp = _xp(z)
  model, k, a, b, alpha = _model(cortex_params)
  if model == "monopole":
    return k * xp.log(1 + z / a)
  if model == "wedge-dipole":
    z = xp.abs(z) * xp.exp(1j * alpha * xp.angle(z))
  return k * xp.log(b * (z + a) / (a * (z + b)))


def cortex_to_visual_field(w, cortex_params: Mapping[str, Any]):
  """Maps cortical positions w (complex, mm) to the visual field z (deg)."""
  xp = _xp(w)
  model, k, a, b, alpha = _model(cortex_params)
  e = xp.exp(w / k)
  if model == "monopole":
    return a * e - a
  z = a * b * (e - 1) / (b - a * e)
  if model == "wedge-dipole":
    z = xp.abs(z) * xp.exp(1j * xp.angle(z) / alpha)
  return z


def cortical_magnification(r, cortex_params: Mapping[str, Any]):
  """Cortical magnification (mm / degree) at eccentricity r (degrees).

  As dynaphos, the wedge-dipole uses the dipole's radial magnification.
  """
  model, k, a, b, _ = _model(cortex_params)
  if model == "monopole":
    return k / (r + a)
  return k * (1 / (r + a) - 1 / (r + b))


def visual_field_grid() -> np.ndarray:
  """dynaphos' reference grid of the right hemifield (complex, degrees).

  Eccentricities 0..89 degrees by 1, 10 polar angles from -pi/2 to pi/2.
  """
  r, phi = np.meshgrid(np.arange(0, 90, 1), np.linspace(-np.pi / 2, np.pi / 2, 10))
  return (r * np.exp(1j * phi)).ravel()


def cortex_grid(cortex_params: Mapping[str, Any], n_x: int, n_y: int, *,
                x_max: float | None = None) -> tuple[np.ndarray, np.ndarray]:
  """A regular n_x by n_y electrode grid (mm) over the mapped hemifield.

  The grid spans the cortical image of `visual_field_grid()` (x up to
  `x_max` mm when given), as dynaphos' `get_cortex_coordinates_grid`.

  Returns:
    (x_mm, y_mm), each of shape (n_y * n_x,), row-major.
  """
  if n_x < 1 or n_y < 1:
    raise ValueError(f"grid size must be positive, got {n_x} x {n_y}")
  w = visual_field_to_cortex(visual_field_grid(), cortex_params)
  x_hi = x_max if x_max else np.max(w.real)
  x, y = np.meshgrid(np.linspace(np.min(w.real), x_hi, n_x),
                     np.linspace(np.min(w.imag), np.max(w.imag), n_y))
  return x.ravel(), y.ravel()


def phosphenes_from_cortex(cortex_params: Mapping[str, Any], x_mm, y_mm, *,
                           key: jax.Array | None = None,
                           hemifield: str = "left") -> Layout:
  """Phosphene positions of cortical electrodes, with noise and dropout.

  Each electrode is moved by Gaussian noise (`cortex_params['noise_scale']`
  mm), a fraction `dropout_rate` is dropped at random, the rest are mapped
  to the visual field, those outside the mapped hemifield (eccentricity
  above 90 degrees or polar angle outside (-pi/2, pi/2)) are removed, and
  the field is turned upside down and mirrored as in dynaphos, which
  places one hemisphere's phosphenes in the left hemifield. `hemifield`
  'right' mirrors that, and 'both' draws both hemispheres independently
  (left first). The caller's arrays are not modified.

  Args:
    cortex_params: the `cortex_model` section of the parameters.
    x_mm: electrode x positions on the cortex (mm), shape (n,).
    y_mm: electrode y positions, shape (n,).
    key: jax PRNG key; required when noise_scale or dropout_rate is > 0.
    hemifield: 'left', 'right' or 'both'.

  Returns:
    A Layout; `kept` has shape (n,), or (2, n) for 'both'.

  Raises:
    ValueError: for mismatched shapes, a missing key or a bad hemifield.
  """
  if hemifield not in ("left", "right", "both"):
    raise ValueError(f"hemifield must be 'left', 'right' or 'both', got {hemifield!r}")
  x_mm = np.asarray(x_mm, np.float64)
  y_mm = np.asarray(y_mm, np.float64)
  if x_mm.ndim != 1 or x_mm.shape != y_mm.shape:
    raise ValueError(f"x_mm and y_mm must be 1-D of equal length, got "
                     f"{x_mm.shape} and {y_mm.shape}")
  noise = float(cortex_params.get("noise_scale", 0.0))
  dropout = float(cortex_params.get("dropout_rate", 0.0))
  if key is None and (noise > 0 or dropout > 0):
    raise ValueError("a PRNG key is required when cortex_model.noise_scale or "
                     "cortex_model.dropout_rate is > 0")
  if hemifield == "both":
    keys = jax.random.split(key) if key is not None else (None, None)
    left = phosphenes_from_cortex(cortex_params, x_mm, y_mm, key=keys[0])
    right = phosphenes_from_cortex(cortex_params, x_mm, y_mm, key=keys[1],
                                   hemifield="right")
    return Layout(np.concatenate([left.x_deg, right.x_deg]),
                  np.concatenate([left.y_deg, right.y_deg]),
                  np.stack([left.kept, right.kept]))
  n = x_mm.shape[0]
  x, y = x_mm, y_mm
  active = np.ones(n, bool)
  if key is not None:
    k_noise, k_drop = jax.random.split(key)
    offsets = np.asarray(jax.random.normal(k_noise, (2, n), jnp.float32), np.float64)
    x, y = x + noise * offsets[0], y + noise * offsets[1]
    if dropout > 0:
      chosen = np.asarray(jax.random.choice(
          k_drop, n, (int(n * (1 - dropout)),), replace=False))
      active = np.zeros(n, bool)
      active[chosen] = True
  z = cortex_to_visual_field(x + 1j * y, cortex_params)
  r, phi = np.abs(z), np.angle(z)
  with np.errstate(invalid="ignore"):
    kept = active & (r >= 0) & (r <= 90) & (phi > -np.pi / 2) & (phi < np.pi / 2)
  z = -z[kept]  # Upside down and mirrored: the left hemifield.
  if hemifield == "right":
    z = -np.conj(z)
  return Layout(z.real.copy(), z.imag.copy(), kept)


def phosphenes_by_magnification(params: Mapping[str, Any], n: int, *,
                                key: jax.Array) -> tuple[np.ndarray, np.ndarray]:
  """Draws n phosphene positions with density following magnification.

  As dynaphos' `get_visual_field_coordinates_probabilistically`: the
  eccentricity is drawn from 1000 values between `run.min_angle` and half
  the view angle with probability proportional to the cortical
  magnification, the polar angle uniformly.

  Args:
    params: full simulator parameters (`run` and `cortex_model` are read).
    n: number of phosphenes.
    key: jax PRNG key.

  Returns:
    (x_deg, y_deg), each of shape (n,).
  """
  if n < 0:
    raise ValueError(f"n must be >= 0, got {n}")
  ecc = np.linspace(params["run"]["min_angle"], params["run"]["view_angle"] / 2, 1000)
  weights = cortical_magnification(ecc, params["cortex_model"])
  k_r, k_phi = jax.random.split(key)
  idx = np.asarray(jax.random.choice(k_r, ecc.shape[0], (n,), p=jnp.asarray(
      weights / np.sum(weights), jnp.float32)))
  r = ecc[idx]
  phi = 2 * np.pi * np.asarray(jax.random.uniform(k_phi, (n,)), np.float64)
  return r * np.cos(phi), r * np.sin(phi)


def polar_to_cartesian(r, phi):
  """(eccentricity, polar angle in radians) -> (x, y)."""
  xp = _xp(r, phi)
  return r * xp.cos(phi), r * xp.sin(phi)


def cartesian_to_polar(x, y):
  """(x, y) -> (eccentricity, polar angle in radians)."""
  xp = _xp(x, y)
  return xp.hypot(x, y), xp.arctan2(y, x)


def view_bounds(run_params: Mapping[str, Any]) -> tuple[float, float, float, float]:
  """(x_min, x_max, y_min, y_max) of the simulated view, in degrees."""
  half = float(run_params["view_angle"]) / 2
  x0, y0 = (float(v) for v in run_params["origin"])
  return x0 - half, x0 + half, y0 - half, y0 + half


def in_view(x_deg, y_deg, run_params: Mapping[str, Any]) -> np.ndarray:
  """Which phosphenes lie in the view: x_min <= x < x_max, likewise y.

  The comparison is made in float32, as dynaphos makes it.
  """
  x_min, x_max, y_min, y_max = (np.float32(v) for v in view_bounds(run_params))
  x = np.asarray(x_deg, np.float32)
  y = np.asarray(y_deg, np.float32)
  return (x >= x_min) & (x < x_max) & (y >= y_min) & (y < y_max)


def remove_out_of_view(x_deg, y_deg, run_params: Mapping[str, Any]) -> Layout:
  """Drops phosphenes outside the simulated view; returns the kept mask."""
  x = np.asarray(x_deg)
  y = np.asarray(y_deg)
  if x.ndim != 1 or x.shape != y.shape:
    raise ValueError(f"x_deg and y_deg must be 1-D of equal length, got "
                     f"{x.shape} and {y.shape}")
  kept = in_view(x, y, run_params)
  return Layout(x[kept].copy(), y[kept].copy(), kept)


def load_coordinates(path_or_dict: str | os.PathLike | Mapping[str, Any],
                     ) -> tuple[np.ndarray, np.ndarray]:
  """Reads an explicit coordinate list: a YAML file or mapping with x, y lists.

  This is the format of dynaphos' `config/grid_coords*.yaml` (cortical
  coordinates in mm there; the units are whatever the lists hold).

  Raises:
    FileNotFoundError: if the path does not exist.
    ValueError: if x or y is missing, not numeric, or of unequal length.
  """
  source = "coordinates"
  if isinstance(path_or_dict, Mapping):
    data = path_or_dict
  else:
    source = os.fspath(path_or_dict)
    if not os.path.exists(source):
      raise FileNotFoundError(f"coordinate file not found: {source}")
    with open(source, "r") as f:
      try:
        data = yaml.safe_load(f)
      except yaml.YAMLError as e:
        raise ValueError(f"{source}: not valid YAML: {e}") from e
  if not isinstance(data, Mapping) or "x" not in data or "y" not in data:
    raise ValueError(f"{source}: expected a mapping with lists 'x' and 'y'")
  try:
    x = np.asarray(data["x"], np.float64).ravel()
    y = np.asarray(data["y"], np.float64).ravel()
  except (TypeError, ValueError) as e:
    raise ValueError(f"{source}: x and y must be numeric lists: {e}") from None
  if x.shape != y.shape:
    raise ValueError(f"{source}: x and y differ in length: {x.size} vs {y.size}")
  return x, y
