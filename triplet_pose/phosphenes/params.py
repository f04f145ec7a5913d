"""Simulator parameters in the dynaphos `params.yaml` schema, validated.

The phosphene simulator reads exactly the configuration format of dynaphos
(van der Grinten et al., eLife 2024), so a researcher's existing
`params.yaml` works unchanged. `DEFAULT_PARAMS` equals dynaphos' published
default file (config/params.yaml), plus `sampling.stimulus_scale` (the
amplitude in amperes that a mask value of 1 maps to with `rescale=True`),
which later dynaphos versions read and older files lack.

`load_params` returns a fresh, validated nested dict. Fields that dynaphos
never reads while simulating (the `display` section, `run.gpu`,
`run.print_stats`, `run.use_gaussian_lut`, `run.batch_size`) and
`sampling.stimulus_scale` are filled from the defaults when absent; every
other field is required, and a missing or out-of-range field raises a
`ValueError` that names it.
"""

from __future__ import annotations

import copy
import math
import os
from typing import Any, Callable, Mapping

import yaml

DEFAULT_PARAMS: Mapping[str, Mapping[str, Any]] = {
    "run": {
        "resolution": [256, 256],  # [width, height] in pixels.
        "view_angle": 16.0,  # Degrees, horizontal (and vertical) field of view.
        "origin": [0.0, 0.0],
        "min_angle": 0.001,  # Degrees, minimal eccentricity.
        "fps": 35.0,
        "gpu": 0,
        "print_stats": False,
        "seed": 42,
        "dtype": "float32",
        "use_gaussian_lut": False,
        "batch_size": 0,
    },
    "display": {
        "screen_resolution": [1920, 1080],
        "screen_diagonal": 13.3,
        "dist_to_screen": 600.0,
    },
    "sampling": {
        "sampling_method": "receptive_fields",  # Or "center".
        "RF_size": 0.5,  # Millimetres of cortical surface.
        "stimulus_scale": 100.0e-6,  # Amperes for a mask value of 1.
    },
    "cortex_model": {
        "model": "dipole",
        "k": 17.3,
        "a": 0.75,
        "b": 120.0,
        "alpha": 0.95,
        "dropout_rate": 0.2,
        "noise_scale": 0.4,
    },
    "temporal_dynamics": {
        "trace_increase_rate": 13.95528162,
        "activation_decay_per_second": 0.00012340980408667956,
        "trace_decay_per_second": 0.99949191,
    },
    "size": {
        "size_equation": "sqrt",  # Or "sigmoid".
        "MD": 0.7,  # Maximum diameter of activated cortex, mm.
        "I_half": 40.0,  # Microamperes.
        "slope_size": 0.08,  # mm per microampere.
        "current_spread": 675.0e-6,  # A / mm^2.
        "radius_to_sigma": 0.5,
    },
    "brightness_saturation": {
        "cps_half": 1.057631326853325e-07,
        "slope_brightness": 19152642.500946816,
    },
    "thresholding": {
        "use_threshold": True,
        "rheobase": 23.9e-6,
        "activation_threshold": 9.141886000943878e-08,
        "activation_threshold_sd": 6.715877869833961e-08,
    },
    "default_stim": {
        "relative_stim_duration": 1.0,
        "pw_default": 170.0e-6,
        "freq_default": 300.0,
    },
    "gabor": {
        "gabor_filtering": False,
        "gamma": 1.5,
    },
}

_OPTIONAL = {
    ("run", "gpu"), ("run", "print_stats"), ("run", "use_gaussian_lut"),
    ("run", "batch_size"), ("sampling", "stimulus_scale"),
    ("display", "screen_resolution"), ("display", "screen_diagonal"),
    ("display", "dist_to_screen"),
}


def default_params() -> dict[str, dict[str, Any]]:
  """A fresh, mutable copy of `DEFAULT_PARAMS` (dynaphos' defaults)."""
  return copy.deepcopy({k: dict(v) for k, v in DEFAULT_PARAMS.items()})


def load_params(path_or_dict: str | os.PathLike | Mapping[str, Any],
                ) -> dict[str, dict[str, Any]]:
  """Loads and validates simulator parameters.

  Args:
    path_or_dict: a path to a dynaphos-style `params.yaml`, or a nested
      mapping with the same sections. The caller's mapping is never mutated.

  Returns:
    A new nested dict with every field of the schema, numbers as float/int.

  Raises:
    FileNotFoundError: if the path does not exist.
    ValueError: if the file is not valid YAML, or a section or field is
      missing, of the wrong type or out of range (the message names the
      file and the field).
  """
  source = "params"
  if isinstance(path_or_dict, Mapping):
    raw = copy.deepcopy(dict(path_or_dict))
  else:
    source = os.fspath(path_or_dict)
    if not os.path.exists(source):
      raise FileNotFoundError(f"params file not found: {source}")
    try:
      with open(source, "r") as f:
        raw = yaml.safe_load(f)
    except yaml.YAMLError as e:
      raise ValueError(f"{source}: not valid YAML: {e}") from e
    if not isinstance(raw, Mapping):
      raise ValueError(f"{source}: expected a mapping of sections, got "
                       f"{type(raw).__name__}")
  return _validate(raw, source)


def _number(lo: float | None = None, hi: float | None = None, *,
             lo_open: bool = False, hi_open: bool = False,
             integer: bool = False) -> Callable[[str, Any], Any]:
  def check(name: str, value: Any):
    if isinstance(value, str):
      # YAML 1.1 reads "1e-4" (no dot) as a string; accept it as a number.
      try:
        value = float(value)
      except ValueError:
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
      raise ValueError(f"{name} must be finite, got {value!r}")
    if integer:
      if float(value) != int(value):
        raise ValueError(f"{name} must be an integer, got {value!r}")
      value = int(value)
    else:
      value = float(value)
    if lo is not None and (value < lo or (lo_open and value == lo)):
      raise ValueError(f"{name} must be {'>' if lo_open else '>='} {lo}, "
                       f"got {value!r}")
    if hi is not None and (value > hi or (hi_open and value == hi)):
      raise ValueError(f"{name} must be {'<' if hi_open else '<='} {hi}, "
                       f"got {value!r}")
    return value
  return check


def _pair(item: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
  def check(name: str, value: Any):
    if not isinstance(value, (list, tuple)) or len(value) != 2:
      raise ValueError(f"{name} must be a list of two numbers, got {value!r}")
    return [item(f"{name}[{i}]", v) for i, v in enumerate(value)]
  return check


def _choice(*options: str) -> Callable[[str, Any], Any]:
  def check(name: str, value: Any):
    if value not in options:
      raise ValueError(f"{name} must be one of {list(options)}, got {value!r}")
    return value
  return check


def _bool(name: str, value: Any) -> bool:
  if not isinstance(value, bool):
    raise ValueError(f"{name} must be true or false, got {value!r}")
  return value


def _any(name: str, value: Any) -> Any:
  del name
  return value


_POS = _number(0.0, lo_open=True)
_NONNEG = _number(0.0)
_REAL = _number()

_SCHEMA: Mapping[str, Mapping[str, Callable[[str, Any], Any]]] = {
    "run": {
        "resolution": _pair(_number(2, integer=True)),
        "view_angle": _POS,
        "origin": _pair(_REAL),
        "min_angle": _NONNEG,
        "fps": _POS,
        "gpu": _any,
        "print_stats": _any,
        "seed": _number(0, integer=True),
        "dtype": _choice("float32", "float64"),
        "use_gaussian_lut": _any,
        "batch_size": _number(0, integer=True),
    },
    "display": {
        "screen_resolution": _pair(_number(1, integer=True)),
        "screen_diagonal": _POS,
        "dist_to_screen": _POS,
    },
    "sampling": {
        "sampling_method": _choice("receptive_fields", "center"),
        "RF_size": _POS,
        "stimulus_scale": _POS,
    },
    "cortex_model": {
        "model": _choice("monopole", "dipole", "wedge-dipole"),
        "k": _POS,
        "a": _POS,
        "b": _POS,
        "alpha": _POS,
        "dropout_rate": _number(0.0, 1.0, hi_open=True),
        "noise_scale": _NONNEG,
    },
    "temporal_dynamics": {
        "trace_increase_rate": _NONNEG,
        "activation_decay_per_second": _number(0.0, 1.0, lo_open=True,
                                               hi_open=True),
        "trace_decay_per_second": _number(0.0, 1.0, lo_open=True),
    },
    "size": {
        "size_equation": _choice("sqrt", "sigmoid"),
        "MD": _POS,
        "I_half": _REAL,
        "slope_size": _NONNEG,
        "current_spread": _POS,
        "radius_to_sigma": _POS,
    },
    "brightness_saturation": {
        "cps_half": _REAL,
        "slope_brightness": _POS,
    },
    "thresholding": {
        "use_threshold": _bool,
        "rheobase": _NONNEG,
        "activation_threshold": _NONNEG,
        "activation_threshold_sd": _NONNEG,
    },
    "default_stim": {
        "relative_stim_duration": _number(0.0, 1.0, lo_open=True),
        "pw_default": _POS,
        "freq_default": _POS,
    },
    "gabor": {
        "gabor_filtering": _bool,
        "gamma": _POS,
    },
}


def _validate(raw: Mapping[str, Any], source: str) -> dict[str, dict[str, Any]]:
  out: dict[str, dict[str, Any]] = {}
  for section, fields in _SCHEMA.items():
    given = raw.get(section)
    if given is None:
      if all((section, f) in _OPTIONAL for f in fields):
        given = {}
      else:
        raise ValueError(f"{source}: missing section {section!r}")
    if not isinstance(given, Mapping):
      raise ValueError(f"{source}: section {section!r} must be a mapping, "
                       f"got {type(given).__name__}")
    sec = dict(given)  # Unknown fields are kept as they are.
    for field, check in fields.items():
      name = f"{section}.{field}"
      if field not in given:
        if (section, field) not in _OPTIONAL:
          raise ValueError(f"{source}: missing field {name}")
        sec[field] = copy.deepcopy(DEFAULT_PARAMS[section][field])
        continue
      try:
        sec[field] = check(name, given[field])
      except ValueError as e:
        raise ValueError(f"{source}: {e}") from None
    out[section] = sec
  for section, value in raw.items():
    if section not in out:
      out[section] = copy.deepcopy(value)
  cm = out["cortex_model"]
  if cm["model"] != "monopole" and not cm["b"] > cm["a"]:
    raise ValueError(f"{source}: cortex_model.b must exceed cortex_model.a for "
                     f"the {cm['model']} model, got a={cm['a']}, b={cm['b']}")
  return out
