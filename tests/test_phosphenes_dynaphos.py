"""Equivalence with dynaphos 0.1.3, the PyTorch simulator ours reimplements.

Two kinds of checks:

* Published numbers, no torch needed (always run): the reference values of
  dynaphos' own test suite (`test/test_all.py` and `test/data/` of
  github.com/neuralcodinglab/dynaphos at commit f3e1022, release 0.1.3):
  the visual-field grid (`z_full_view.npy`), the cortical maps
  (`coordinates_<model>.npz`), the electrode grid, the Fernandez et al. 2021
  brightness fit (`fernandez_{activation,brightness}_fit.npy`) and the
  51,200-frame dynamics run (`results_dynamics.pkl`), copied here as a few
  values and sums of each; and the stimulus that dynaphos 0.1.3 samples in a
  fixed case (`DYNAPHOS_SAMPLES`, printed by
  `python tests/test_phosphenes_dynaphos.py`).
* Live comparison with the installed dynaphos (needs torch, OpenCV and
  dynaphos: `pip install -e '.[test,peers]'`; skipped locally without them,
  with the reason, and FAILING under CI=true, see tests/peers.py): the same
  params, coordinates, thresholds and a 20-frame stimulus sequence give the
  same images to float32 rounding (max abs error printed, < 1e-4: the pixel
  grids of torch.linspace and numpy.linspace differ by a few float32 ulps),
  and dynaphos itself still gives the numbers above.
"""

from __future__ import annotations

import types
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import peers
from triplet_pose import phosphenes

FRAMES = 20
MODELS = ["monopole", "dipole", "wedge-dipole"]
DYNAPHOS = phosphenes.Options.dynaphos_compatible()

# --------------------------------------------------------------------------
# Published numbers (dynaphos 0.1.3's test suite and its test/data/ files).

# z_full_view.npy: 900 complex points; these indices, and sums of all.
GRID_INDEX = [1, 95, 188, 281, 374, 467, 560, 653, 746, 839, 899]
GRID_VALUES = [-1j, 1.7101007166283442 - 4.698463103929542j,
               5.142300877492315 - 6.128355544951824j, 9.526279441628825 - 5.5j,
               13.787308542170912 - 2.431074487337025j,
               16.741731801207536 + 2.9520190203378163j, 17.320508075688775 + 10j,
               14.784115022790408 + 17.61902219173649j, 8.89252372646739 + 24.432008140433616j,
               29j, 89j]
GRID_SUMS = (22713.48368756893, 40050.0)  # sum of real parts, of moduli.

# coordinates_<model>.npz: cortex (x, y) mm of z_full_view, at GRID_INDEX,
# and (sum x, sum |y|) over all 900.
CORTEX_MAPS = {
    "monopole": ([(8.83728329, -16.04220727), (33.83981431, -18.83018313),
                  (42.0031509, -13.92707192), (47.46194111, -8.50156111),
                  (51.52271138, -2.86655396), (54.72772665, 2.89240598),
                  (57.3588242, 8.74412138), (59.58499441, 14.67390556),
                  (61.51804458, 20.67168733), (63.2369013, 26.72746237),
                  (82.6309233, 27.02899339)], (59066.941712265136, 13033.285203118603)),
    "dipole": ([(8.83668262, -15.89804394), (33.58213393, -18.16267016),
                (41.25652783, -13.08054824), (46.12477628, -7.76740218),
                (49.63831553, -2.55222698), (52.46427757, 2.51898671),
                (54.98058514, 7.48651492), (57.42847448, 12.42519474),
                (59.9759714, 17.43086428), (62.74591901, 22.62528155),
                (78.83963061, 15.98906054)], (55751.9259372008, 9883.46124261359)),
    "wedge-dipole": ([(9.45353372, -15.03581612), (33.67239549, -17.19622176),
                      (41.2688755, -12.4061965), (46.12084213, -7.37460125),
                      (49.63715259, -2.42444903), (52.46252581, 2.39286872),
                      (54.96039235, 7.1075758), (57.36184412, 11.78212919),
                      (59.82755382, 16.49730416), (62.47642734, 21.35438003),
                      (78.22483387, 15.12009507)], (55632.24546696947, 9354.610779082082)),
}

# test_init_covering_electrode_grid: a 4 x 4 grid over the default (dipole) map.
ELECTRODE_GRID_X = [0., 26.27987687, 52.55975374, 78.83963061]
ELECTRODE_GRID_Y = [-24.44135778, -8.14711926, 8.14711926, 24.44135778]

# Fernandez et al. 2021, Fig. 6A protocol: 10..100 uA, 170 us pulses at 300 Hz
# for 83 of 500 frames at 500 fps, no threshold; peak activation and
# brightness per amplitude (fernandez_{activation,brightness}_fit.npy).
FERNANDEZ_ACTIVATION = [0.0, 0.0, 2.5037856232756894e-08, 6.608350844317101e-08,
                        1.0712917486443985e-07, 1.481748199694266e-07,
                        1.8922051481240487e-07, 2.302661812336737e-07,
                        2.713118192332331e-07, 3.123574572327925e-07]
FERNANDEZ_BRIGHTNESS = [0.11653672158718109, 0.11653672158718109, 0.17564991116523743,
                        0.318652868270874, 0.5065404176712036, 0.6925985217094421,
                        0.8317987322807312, 0.9156424403190613, 0.9597164392471313,
                        0.9812352061271667]

# test_dynamics (results_dynamics.pkl): 90 uA trains of 0.125 s every 4 s
# for 200 s at 256 fps (51,200 frames), 100 us pulses at 200 Hz, no
# threshold. Values at these frames (ends of trains 1, 2, 26 and 50; before
# train 2; the last frame) and sums over all frames.
DYNAMICS_FRAMES = [31, 1023, 1055, 25631, 50207, 51199]
DYNAMICS = {
    "activation": ([9.81622819e-08, 3.74348547e-23, 9.48017558e-08, 4.22978523e-08,
                    2.06612505e-08, 7.87931943e-24], 0.000114272866),
    "trace": ([2.26749171e-06, 2.26298062e-06, 4.4527028e-06, 3.8593731e-05,
               5.26630902e-05, 5.25584328e-05], 1.76561873),
    "brightness": ([0.463669986, 0.116536722, 0.447707027, 0.22872445, 0.163840503,
                    0.116536722], 6256.20548),
}

# What dynaphos 0.1.3 samples from `_sampling_mask()` at `SAMPLING_X/Y`:
# the index k of the mask value k / 16 (mask values are distinct multiples of
# 1/16, so the index names the pixel's value exactly).
SAMPLING_X = [-7.3, -4.05, -1.2, 0.0, 0.33, 2.7, 5.05, 7.6]
SAMPLING_Y = [6.9, -3.3, 0.44, 0.0, -7.7, 2.15, -0.6, 4.45]
DYNAPHOS_SAMPLES = {
    "center": [5.0, 6.0, 14.0, 0.0, 8.0, 4.0, 7.0, 0.0],
    # Near the fovea the field holds no pixel centre (0); far out it reaches
    # a brighter pixel than the centre.
    "receptive_fields": [13.0, 6.0, 0.0, 0.0, 8.0, 4.0, 7.0, 14.0],
}


def _cortex(model):
  return dict(phosphenes.default_params()["cortex_model"], model=model)


def test_visual_field_grid_matches_dynaphos_fixture():
  z = phosphenes.visual_field_grid()
  assert z.shape == (900,)
  np.testing.assert_allclose(z[GRID_INDEX], GRID_VALUES, atol=1e-12)
  np.testing.assert_allclose([z.real.sum(), np.abs(z).sum()], GRID_SUMS, rtol=1e-12)


@pytest.mark.parametrize("model", MODELS)
def test_cortical_maps_match_dynaphos_fixture(model):
  points, (sum_x, sum_abs_y) = CORTEX_MAPS[model]
  w = phosphenes.visual_field_to_cortex(phosphenes.visual_field_grid(), _cortex(model))
  np.testing.assert_allclose(np.stack([w.real, w.imag], -1)[GRID_INDEX], points, atol=1e-7)
  np.testing.assert_allclose([w.real.sum(), np.abs(w.imag).sum()], [sum_x, sum_abs_y],
                             rtol=1e-10)
  # The inverse map takes the fixture's cortex points back to the grid.
  back = phosphenes.cortex_to_visual_field(np.array([complex(*p) for p in points]),
                                           _cortex(model))
  np.testing.assert_allclose(back, GRID_VALUES, atol=1e-6)


def test_electrode_grid_matches_dynaphos_fixture():
  x, y = phosphenes.cortex_grid(_cortex("dipole"), 4, 4)
  np.testing.assert_allclose(x, np.tile(ELECTRODE_GRID_X, 4), atol=1e-7)
  np.testing.assert_allclose(y, np.repeat(ELECTRODE_GRID_Y, 4), atol=1e-7)


def _single_phosphene_run(params, amplitudes):
  """Brightness, activation and trace per frame of one phosphene, (T, *batch)."""
  sim = phosphenes.Simulator.create(params, np.array([-2.0]), np.array([1.0]),
                                    options=DYNAPHOS)

  def body(state, amplitude):
    state, frame = sim.update(state, amplitude[..., None])
    return state, (frame.brightness[..., 0], state.activation[..., 0], state.trace[..., 0])

  amplitudes = jnp.asarray(amplitudes, jnp.float32)
  _, out = jax.lax.scan(body, sim.init_state(amplitudes.shape[1:]), amplitudes)
  return dict(zip(("brightness", "activation", "trace"), map(np.asarray, out)))


def _protocol(fps, pulse_width, frequency):
  params = phosphenes.default_params()
  params["default_stim"].update(pw_default=pulse_width, freq_default=frequency)
  params["run"]["fps"] = fps
  params["thresholding"]["use_threshold"] = False
  return params


def test_fernandez_brightness_fit_matches_dynaphos_fixture():
  train = np.concatenate([np.ones(83), np.zeros(417)])
  amplitudes = np.arange(1, 11) * 1e-5
  out = _single_phosphene_run(_protocol(500, 170e-6, 300), train[:, None] * amplitudes)
  np.testing.assert_allclose(out["activation"].max(0), FERNANDEZ_ACTIVATION,
                             rtol=1e-5, atol=1e-15)
  np.testing.assert_allclose(out["brightness"].max(0), FERNANDEZ_BRIGHTNESS, rtol=1e-5)


def _dynamics_stimulus(fps=256):
  stimulus = np.zeros(200 * fps)
  for t in np.linspace(0, 200, 50, endpoint=False):
    stimulus[int(t * fps): int(t * fps) + int(0.125 * fps)] = 90e-6
  return stimulus


def test_long_run_dynamics_match_dynaphos_fixture():
  out = _single_phosphene_run(_protocol(256, 100e-6, 200), _dynamics_stimulus())
  for name, (values, total) in DYNAMICS.items():
    np.testing.assert_allclose(out[name][DYNAMICS_FRAMES], values, rtol=2e-5, atol=1e-20,
                               err_msg=name)
    np.testing.assert_allclose(out[name].sum(dtype=np.float64), total, rtol=2e-5,
                               err_msg=name)


def _sampling_params(method):
  p = phosphenes.default_params()
  p["sampling"]["sampling_method"] = method
  p["run"].update(resolution=[64, 48], gpu=None, batch_size=0)
  return p


def _sampling_mask(height=48, width=64):
  rows, cols = np.mgrid[:height, :width]
  return ((rows * 5 + cols * 3) % 16 / 16).astype(np.float32)


@pytest.mark.parametrize("method", ["center", "receptive_fields"])
def test_sampling_matches_dynaphos_recorded(method):
  sim = phosphenes.Simulator.create(_sampling_params(method), SAMPLING_X, SAMPLING_Y,
                                    options=DYNAPHOS)
  assert bool(np.all(sim.kept))
  got = np.asarray(sim.sample_stimulus(_sampling_mask())) * 16
  np.testing.assert_allclose(got, DYNAPHOS_SAMPLES[method], atol=1e-5)


# --------------------------------------------------------------------------
# Live comparison with the installed dynaphos.


@pytest.fixture(scope="module")
def dyn():
  """torch and dynaphos' modules; skips (fails under CI=true) without them."""
  why = "the live comparison with dynaphos"
  torch = peers.require("torch", why=why)
  peers.require("cv2", why=why + " (dynaphos.simulator imports OpenCV)")
  return types.SimpleNamespace(
      torch=torch, sim=peers.require("dynaphos.simulator", why=why),
      cm=peers.require("dynaphos.cortex_models", why=why),
      ut=peers.require("dynaphos.utils", why=why))


def _params(model, method, *, gabor=False, res=(128, 128), batch=0):
  p = phosphenes.default_params()
  p["cortex_model"].update(model=model, noise_scale=0.0, dropout_rate=0.0)
  p["sampling"]["sampling_method"] = method
  p["gabor"]["gabor_filtering"] = gabor
  p["run"].update(gpu=None, resolution=list(res), batch_size=batch)
  return p


def _coordinates(dyn, p, rng):
  cx, cy = dyn.cm.get_cortex_coordinates_grid(p["cortex_model"], 12, 12, x_max=40).cartesian
  vf = dyn.cm.get_visual_field_coordinates_from_cortex_full(p["cortex_model"],
                                                            dyn.ut.Map(cx, cy), rng)
  x, y = vf.cartesian
  # dynaphos' dropout step permutes the electrodes even at rate 0: compare
  # the sets of positions.
  ours = phosphenes.phosphenes_from_cortex(p["cortex_model"], cx, cy, hemifield="both")
  key = lambda a, b: np.lexsort((np.round(b, 6), np.round(a, 6)))
  o, r = key(ours.x_deg, ours.y_deg), key(x, y)
  np.testing.assert_allclose(ours.x_deg[o], x[r], atol=1e-9)
  np.testing.assert_allclose(ours.y_deg[o], y[r], atol=1e-9)
  return np.array(x), np.array(y)


def _reference(dyn, p, x, y, rng, theta=None):
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    return dyn.sim.GaussianSimulator(p, dyn.ut.Map(x.copy(), y.copy()), rng, theta=theta)


def _compare(dyn, p, *, seed=0):
  """Runs ours and dynaphos on the same inputs; returns the max abs image error."""
  torch = dyn.torch
  rng = np.random.default_rng(seed)
  x, y = _coordinates(dyn, p, rng)
  kept = phosphenes.in_view(x, y, p["run"])
  theta = None
  if p["gabor"]["gabor_filtering"]:
    theta = rng.uniform(0, 2 * np.pi, int(kept.sum()))
  ref = _reference(dyn, p, x, y, rng, theta)
  thresholds = ref.threshold.get().numpy().reshape(-1, ref.num_phosphenes)[0]
  sim = phosphenes.Simulator.create(p, x, y, thresholds=thresholds, theta=theta,
                                    options=DYNAPHOS)
  assert sim.num_phosphenes == ref.num_phosphenes > 50
  np.testing.assert_array_equal(np.asarray(sim.kept), kept)

  w, h = p["run"]["resolution"]
  batch = p["run"]["batch_size"]
  masks = rng.random((FRAMES,) + ((batch,) if batch else ()) + (h, w)).astype(np.float32)
  masks[..., : w // 4] = 0.0  # Some electrodes unstimulated...
  masks[FRAMES // 2:] *= 0.3  # ...and weaker stimulation later: decay.
  if batch:
    ref.threshold.state = torch.tensor(np.broadcast_to(
        thresholds[None, :, None, None], ref.shape).copy())
  ref_amps, ref_images = [], []
  for t in range(FRAMES):
    m = torch.tensor(masks[t][:, None] if batch else masks[t])
    amp = ref.sample_stimulus(m, rescale=True)
    ref_amps.append(amp.numpy())
    ref_images.append(ref(amp).numpy())
  ref_images = np.stack(ref_images).reshape((FRAMES,) + masks.shape[1:])

  amps = sim.sample_stimulus(jnp.asarray(masks), rescale=True)
  np.testing.assert_array_equal(np.asarray(amps), np.stack(ref_amps).reshape(amps.shape))
  images, state = sim.run(amps, return_state=True)
  images = np.asarray(images)
  assert ref_images.max() > 0.5  # Phosphenes are visible...
  error = float(np.abs(images - ref_images).max())
  print(f"\n{p['cortex_model']['model']}/{p['sampling']['sampling_method']}"
        f"{'/gabor' if p['gabor']['gabor_filtering'] else ''}"
        f"{f'/batch {batch}' if batch else ''}: {sim.num_phosphenes} phosphenes, "
        f"{w}x{h} px, max abs image error over {FRAMES} frames {error:.2e}")
  assert error < 1e-4
  # ...and the activation state agrees at the end.
  np.testing.assert_allclose(np.asarray(state.activation).ravel(),
                             ref.activation.get().numpy().ravel(), rtol=1e-4, atol=1e-12)
  return error


@pytest.mark.parametrize("model", ["dipole", "wedge-dipole"])
@pytest.mark.parametrize("method", ["receptive_fields", "center"])
def test_matches_dynaphos(dyn, model, method):
  _compare(dyn, _params(model, method))


@pytest.mark.slow
def test_matches_dynaphos_gabor_and_batch(dyn):
  _compare(dyn, _params("dipole", "receptive_fields", gabor=True, res=(96, 96)))
  _compare(dyn, _params("wedge-dipole", "center", res=(80, 64), batch=2))


@pytest.mark.parametrize("model", MODELS)
def test_layout_maps_match_dynaphos(dyn, model):
  p = _cortex(model)
  z = dyn.cm.get_visual_field_coordinates_grid().complex
  np.testing.assert_allclose(phosphenes.visual_field_to_cortex(z, p),
                             dyn.cm.get_mapping_from_visual_field_to_cortex(p)(z), atol=1e-9)
  w = dyn.cm.get_cortex_coordinates_default(p).complex
  np.testing.assert_allclose(phosphenes.cortex_to_visual_field(w, p),
                             dyn.cm.get_mapping_from_cortex_to_visual_field(p)(w), atol=1e-9)
  r = np.linspace(0, 40, 50)
  np.testing.assert_allclose(phosphenes.cortical_magnification(r, p),
                             dyn.cm.get_cortical_magnification(r, p))
  ours = phosphenes.cortex_grid(p, 5, 4, x_max=40)
  ref = dyn.cm.get_cortex_coordinates_grid(p, 5, 4, x_max=40).cartesian
  np.testing.assert_allclose(ours, ref)


def _dynaphos_samples(dyn):
  """What the installed dynaphos samples in the `DYNAPHOS_SAMPLES` case."""
  samples = {}
  for method in DYNAPHOS_SAMPLES:
    ref = _reference(dyn, _sampling_params(method), np.array(SAMPLING_X),
                     np.array(SAMPLING_Y), np.random.default_rng(0))
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")  # Unscaled amperes are what is meant.
      amp = ref.sample_stimulus(dyn.torch.tensor(_sampling_mask()))
    samples[method] = [round(float(v) * 16, 6) for v in amp.numpy()]
  return samples


def test_published_numbers_are_what_dynaphos_computes(dyn):
  """The numbers the torch-free tests use are dynaphos' own."""
  assert _dynaphos_samples(dyn) == DYNAPHOS_SAMPLES
  z = dyn.cm.get_visual_field_coordinates_grid().complex
  np.testing.assert_allclose(z[GRID_INDEX], GRID_VALUES, atol=1e-12)
  for model in MODELS:
    x, y = dyn.cm.get_cortex_coordinates_default(_cortex(model)).cartesian
    np.testing.assert_allclose(np.stack([x, y], -1)[GRID_INDEX], CORTEX_MAPS[model][0],
                               atol=1e-7)
  x, y = dyn.cm.get_cortex_coordinates_grid(_cortex("dipole"), 4, 4).cartesian
  np.testing.assert_allclose(x, np.tile(ELECTRODE_GRID_X, 4), atol=1e-7)
  np.testing.assert_allclose(y, np.repeat(ELECTRODE_GRID_Y, 4), atol=1e-7)
  # The Fernandez protocol through dynaphos' own update (peak activation and
  # brightness per amplitude).
  params = _protocol(500, 170e-6, 300)
  ref = _reference(dyn, params, np.array([-2.0]), np.array([1.0]), np.random.default_rng(0))
  peaks = []
  for amplitude in np.arange(1, 11) * 1e-5:
    ref.reset()
    best = [0.0, 0.0]
    for on in np.concatenate([np.ones(83), np.zeros(417)]):
      ref.update(dyn.torch.ones(1) * float(on * amplitude))
      best = [max(best[0], float(ref.activation.get().max())),
              max(best[1], float(ref.brightness.get().max()))]
    peaks.append(best)
  np.testing.assert_allclose(np.array(peaks), np.stack(
      [FERNANDEZ_ACTIVATION, FERNANDEZ_BRIGHTNESS], -1), rtol=1e-5, atol=1e-15)


if __name__ == "__main__":
  # Prints the recorded numbers from the installed dynaphos.
  import torch  # pylint: disable=g-import-not-at-top
  from dynaphos import cortex_models, simulator, utils  # pylint: disable=g-import-not-at-top
  print("DYNAPHOS_SAMPLES =", _dynaphos_samples(types.SimpleNamespace(
      torch=torch, sim=simulator, cm=cortex_models, ut=utils)))
