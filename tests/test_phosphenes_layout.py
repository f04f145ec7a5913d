"""Parameters and phosphene layouts (no dynaphos needed)."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

from triplet_pose import phosphenes

MODELS = ["monopole", "dipole", "wedge-dipole"]


def test_load_params_from_yaml_file_and_dict(tmp_path):
  path = tmp_path / "params.yaml"
  defaults = phosphenes.default_params()
  text = yaml.safe_dump(defaults)
  assert "stimulus_scale: 0.0001\n" in text
  path.write_text(text.replace("stimulus_scale: 0.0001\n", "stimulus_scale: 1e-4\n"))
  loaded = phosphenes.load_params(path)
  assert loaded == defaults
  given = copy.deepcopy(defaults)
  del given["display"]  # Optional section (unused by the model).
  loaded = phosphenes.load_params(given)
  assert loaded["display"] == defaults["display"] and "display" not in given
  given["sampling"]["stimulus_scale"] = "1e-4"  # YAML 1.1 reads this as a string.
  assert phosphenes.load_params(given)["sampling"]["stimulus_scale"] == 1e-4


@pytest.mark.parametrize("section,field,value,message", [
    ("run", "fps", 0, "run.fps must be > 0"),
    ("run", "resolution", [256], "run.resolution must be a list of two"),
    ("cortex_model", "model", "tripole", "cortex_model.model must be one of"),
    ("cortex_model", "dropout_rate", 1.0, "cortex_model.dropout_rate must be < 1"),
    ("temporal_dynamics", "activation_decay_per_second", 1.5, "must be < 1"),
    ("thresholding", "use_threshold", "yes", "must be true or false"),
    ("size", "current_spread", "wide", "size.current_spread must be a number"),
])
def test_load_params_rejects_out_of_range(section, field, value, message):
  params = phosphenes.default_params()
  params[section][field] = value
  with pytest.raises(ValueError, match=message):
    phosphenes.load_params(params)


def test_load_params_missing_and_bad_files(tmp_path):
  params = phosphenes.default_params()
  del params["size"]["radius_to_sigma"]
  with pytest.raises(ValueError, match="missing field size.radius_to_sigma"):
    phosphenes.load_params(params)
  params = phosphenes.default_params()
  del params["thresholding"]
  with pytest.raises(ValueError, match="missing section 'thresholding'"):
    phosphenes.load_params(params)
  with pytest.raises(FileNotFoundError, match="nope.yaml"):
    phosphenes.load_params(tmp_path / "nope.yaml")
  bad = tmp_path / "bad.yaml"
  bad.write_text("run: [unclosed\n")
  with pytest.raises(ValueError, match="bad.yaml: not valid YAML"):
    phosphenes.load_params(bad)


@pytest.mark.parametrize("model", MODELS)
def test_maps_invert_each_other_and_magnification(model):
  p = dict(phosphenes.default_params()["cortex_model"], model=model)
  z = phosphenes.visual_field_grid()
  z = z[np.abs(z) > 0.5]
  w = phosphenes.visual_field_to_cortex(z, p)
  np.testing.assert_allclose(phosphenes.cortex_to_visual_field(w, p), z, atol=1e-8)
  if model != "wedge-dipole":  # The wedge changes the angular, not radial, scale.
    r = np.linspace(0.5, 30, 20)
    eps = 1e-6
    dw = np.abs(phosphenes.visual_field_to_cortex(r + eps, p)
                - phosphenes.visual_field_to_cortex(r - eps, p)) / (2 * eps)
    np.testing.assert_allclose(phosphenes.cortical_magnification(r, p), dw, rtol=1e-6)
  # jax inputs stay in jax and are differentiable.
  g = jax.grad(lambda r: jnp.real(phosphenes.visual_field_to_cortex(r + 0j, p)))(3.0)
  assert np.isfinite(g) and g > 0


def test_phosphenes_from_cortex_noise_dropout_and_hemifields():
  p = dict(phosphenes.default_params()["cortex_model"])
  x, y = phosphenes.cortex_grid(p, 10, 10, x_max=40)
  x_before = x.copy()
  with pytest.raises(ValueError, match="PRNG key is required"):
    phosphenes.phosphenes_from_cortex(p, x, y)
  key = jax.random.PRNGKey(0)
  a = phosphenes.phosphenes_from_cortex(p, x, y, key=key)
  b = phosphenes.phosphenes_from_cortex(p, x, y, key=key)
  np.testing.assert_array_equal(a.x_deg, b.x_deg)  # Deterministic in the key.
  np.testing.assert_array_equal(x, x_before)
  assert a.kept.shape == (100,) and a.kept.sum() == a.x_deg.shape[0] <= 80
  assert np.all(a.x_deg <= 0)  # One hemisphere: the left hemifield.
  clean = dict(p, noise_scale=0.0, dropout_rate=0.0)
  left = phosphenes.phosphenes_from_cortex(clean, x, y)
  right = phosphenes.phosphenes_from_cortex(clean, x, y, hemifield="right")
  np.testing.assert_allclose(right.x_deg, -left.x_deg)
  np.testing.assert_allclose(right.y_deg, left.y_deg)
  both = phosphenes.phosphenes_from_cortex(clean, x, y, hemifield="both")
  assert both.kept.shape == (2, 100) and both.x_deg.shape[0] == 2 * left.x_deg.shape[0]
  # Without noise the kept electrodes map exactly through the model.
  z = phosphenes.cortex_to_visual_field((x + 1j * y)[left.kept], clean)
  np.testing.assert_allclose(left.x_deg + 1j * left.y_deg, -z)


def test_phosphenes_by_magnification_and_view():
  params = phosphenes.default_params()
  x, y = phosphenes.phosphenes_by_magnification(params, 2000, key=jax.random.PRNGKey(1))
  r = np.hypot(x, y)
  assert r.min() >= 0.001 - 1e-9 and r.max() <= 8 + 1e-9
  assert np.mean(r < 2) > np.mean(r > 6)  # Denser near the fovea.
  layout = phosphenes.remove_out_of_view(np.array([0.0, 8.0, -8.0, 3.0]),
                                         np.array([0.0, 0.0, -8.0, 9.0]), params["run"])
  np.testing.assert_array_equal(layout.kept, [True, False, True, False])
  np.testing.assert_array_equal(layout.x_deg, [0.0, -8.0])


def test_load_coordinates(tmp_path):
  path = tmp_path / "coords.yaml"
  path.write_text("x: [1, 2, 3]\ny: [4, 5, 6]\n")
  x, y = phosphenes.load_coordinates(path)
  np.testing.assert_array_equal(x, [1, 2, 3])
  np.testing.assert_array_equal(y, [4, 5, 6])
  path.write_text("x: [1, 2]\ny: [4]\n")
  with pytest.raises(ValueError, match="differ in length"):
    phosphenes.load_coordinates(path)
  with pytest.raises(ValueError, match="lists 'x' and 'y'"):
    phosphenes.load_coordinates({"x": [1]})


# Hand-computed points of the published maps (Polimeni et al. 2006, as in
# dynaphos; default k = 17.3, a = 0.75, b = 120, alpha = 0.95), z in degrees:
#   monopole      w = k (log(z + a) - log a)
#   dipole        w = k (log((z + a) / (z + b)) - log(a / b))
#   wedge-dipole  the dipole of z' = |z| exp(i alpha arg z)
# and the magnification k / (r + a), or k (1 / (r + a) - 1 / (r + b)) for
# both dipoles (dynaphos uses the dipole's for the wedge too).
HAND_Z = [1.0, 2j, 5 + 5j]
HAND_W = {
    "monopole": [14.658252984698622, 18.106481571975287 + 20.968043857870814j,
                 40.109047996781406 + 12.382364101271627j],
    "dipole": [14.514683696004388, 18.104079127854856 + 20.679737217619635j,
               39.38899855178501 + 11.690732814038707j],
    "wedge-dipole": [14.514683696004388, 18.516612371742703 + 19.502550373739126j,
                     39.40640629559742 + 11.091222390853464j],
}
HAND_MAGNIFICATION = {  # At r = 1 and 10 degrees.
    "monopole": [9.885714285714286, 1.6093023255813954],
    "dipole": [9.742739079102716, 1.4762254025044723],
    "wedge-dipole": [9.742739079102716, 1.4762254025044723],
}


@pytest.mark.parametrize("model", MODELS)
def test_maps_match_hand_computed_points(model):
  p = dict(phosphenes.default_params()["cortex_model"], model=model)
  assert (p["k"], p["a"], p["b"], p["alpha"]) == (17.3, 0.75, 120.0, 0.95)
  np.testing.assert_allclose(phosphenes.visual_field_to_cortex(np.array(HAND_Z), p),
                             HAND_W[model], atol=1e-9)
  np.testing.assert_allclose(phosphenes.cortex_to_visual_field(np.array(HAND_W[model]), p),
                             HAND_Z, atol=1e-9)
  np.testing.assert_allclose(phosphenes.cortical_magnification(np.array([1.0, 10.0]), p),
                             HAND_MAGNIFICATION[model], rtol=1e-12)
