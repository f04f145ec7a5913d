"""Closed-form and gradient checks of the phosphene simulator (no dynaphos)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from triplet_pose import phosphenes

RES = 64
DYNAPHOS = phosphenes.Options.dynaphos_compatible()
AMPLITUDE = phosphenes.Options(size_follows="amplitude")


def _params(**overrides):
  p = phosphenes.default_params()
  p["run"]["resolution"] = [RES, RES]
  p["thresholding"]["use_threshold"] = False
  for dotted, value in overrides.items():
    section, field = dotted.split("__")
    p[section][field] = value
  return p


def _grid(p):
  half = p["run"]["view_angle"] / 2
  return (np.linspace(-half, half, p["run"]["resolution"][0]),
          np.linspace(-half, half, p["run"]["resolution"][1]))


def _magnification(p, r):
  c = p["cortex_model"]
  return c["k"] * (1 / (r + c["a"]) - 1 / (r + c["b"]))


def test_single_phosphene_matches_closed_form():
  # A large current spread constant is avoided: shrink it so sigma is ~3 px.
  p = _params(size__current_spread=675e-6 / 150)
  gx, gy = _grid(p)
  x0, y0 = gx[40], gy[12]  # Exactly on a pixel centre, y < 0.
  sim = phosphenes.Simulator.create(p, [x0], [y0], options=DYNAPHOS)
  amp = 150e-6
  state, image = sim.step(sim.init_state(), jnp.array([amp]))
  frame = sim.frame(sim.init_state(), jnp.array([amp]))
  image = np.asarray(image)

  r = math.hypot(x0, y0)
  sigma = math.sqrt(amp / p["size"]["current_spread"]) * 0.5 / _magnification(p, r)
  np.testing.assert_allclose(float(frame.sigma[0]), sigma, rtol=1e-5)
  charge = (amp - 23.9e-6) * 170e-6 * 300
  activation = charge / p["run"]["fps"]
  np.testing.assert_allclose(float(state.activation[0]), activation, rtol=1e-5)
  bright = 1 / (1 + math.exp(-19152642.500946816 * (activation - 1.057631326853325e-07)))
  np.testing.assert_allclose(float(frame.brightness[0]), bright, rtol=1e-5)

  # Peak at the phosphene's pixel: row 12 (row 0 is the smallest y), col 40.
  assert np.unravel_index(np.argmax(image), image.shape) == (12, 40)
  np.testing.assert_allclose(image[12, 40], bright, rtol=1e-5)
  expected = bright * np.exp(-((gx[None, :] - x0) ** 2 + (gy[:, None] - y0) ** 2)
                             / (2 * sigma ** 2))
  np.testing.assert_allclose(image, expected, atol=2e-6)
  # The image's spread recovers sigma (second moment in pixels).
  pix = sigma / (gx[1] - gx[0])
  cols = np.arange(RES)
  var = np.sum(image.sum(0) * (cols - 40) ** 2) / image.sum()
  np.testing.assert_allclose(math.sqrt(var), pix, rtol=1e-3)


@pytest.mark.parametrize("amp", [40e-6, 80e-6, 160e-6])
def test_sigma_grows_with_sqrt_of_current(amp):
  p = _params()
  sim = phosphenes.Simulator.create(p, [1.0, -4.0], [2.0, 0.5], options=AMPLITUDE)
  frame = sim.frame(sim.init_state(), jnp.full((2,), amp))
  r = np.hypot([1.0, -4.0], [2.0, 0.5])
  expected = np.sqrt(amp / 675e-6) * 0.5 / _magnification(p, r)
  np.testing.assert_allclose(np.asarray(frame.sigma), expected, rtol=1e-5)


def test_brightness_curve_is_sigmoid_of_activation():
  p = _params()
  sim = phosphenes.Simulator.create(p, np.zeros(5) + 1.0, np.linspace(-3, 3, 5))
  amps = jnp.linspace(30e-6, 200e-6, 5)
  state, frame = sim.update(sim.init_state(), amps)
  act = np.asarray(state.activation, np.float64)
  expected = 1 / (1 + np.exp(-19152642.500946816 * (act - 1.057631326853325e-07)))
  np.testing.assert_allclose(np.asarray(frame.brightness), expected, rtol=1e-4)
  assert np.all(np.diff(np.asarray(frame.brightness)) > 0)


def test_activation_decay_matches_leaky_integrator():
  p = _params(run__fps=1000.0)
  sim = phosphenes.Simulator.create(p, [2.0], [2.0])
  steps = 200
  amps = jnp.zeros((steps, 1)).at[0].set(100e-6)
  _, final = sim.run(amps, return_state=True)
  states = []
  state = sim.init_state()
  for t in range(steps):
    state, _ = sim.update(state, amps[t])
    states.append(float(state.activation[0]))
  states = np.asarray(states)
  gamma = -math.log(p["temporal_dynamics"]["activation_decay_per_second"])
  k = np.arange(steps)
  # The Euler recursion exactly, and the continuous solution A0 exp(-gamma t).
  np.testing.assert_allclose(states, states[0] * (1 - gamma / 1000.0) ** k, rtol=1e-4)
  np.testing.assert_allclose(states, states[0] * np.exp(-gamma * k / 1000.0), rtol=1e-2)
  np.testing.assert_allclose(float(final.activation[0]), states[-1], rtol=1e-6)


def test_run_equals_step_loop_and_batches():
  p = _params()
  sim = phosphenes.Simulator.create(p, np.linspace(-5, 5, 7), np.linspace(4, -4, 7))
  amps = jax.random.uniform(jax.random.PRNGKey(0), (4, 3, 7)) * 150e-6
  images = sim.run(amps)
  assert images.shape == (4, 3, RES, RES)
  state = sim.init_state((3,))
  for t in range(4):
    state, img = sim.step(state, amps[t])
    np.testing.assert_allclose(img, images[t], atol=1e-6)
  # vmap over the batch gives the same frames.
  per_item = jax.vmap(lambda a: sim.run(a), in_axes=1, out_axes=1)(amps)
  np.testing.assert_allclose(per_item, images, atol=1e-6)


def test_simulator_is_a_pytree_through_jit():
  p = _params()
  sim = phosphenes.Simulator.create(p, [0.5, -1.0], [0.5, 1.0])
  leaves = jax.tree_util.tree_leaves(sim)
  assert any(leaf.shape == (2,) for leaf in leaves)
  f = jax.jit(lambda s, a: s.step(s.init_state(), a)[1])
  np.testing.assert_allclose(f(sim, jnp.full((2,), 1e-4)),
                             sim.step(sim.init_state(), jnp.full((2,), 1e-4))[1], atol=1e-7)


def test_thresholds_gate_phosphenes():
  p = _params(thresholding__use_threshold=True, size__current_spread=675e-6 / 150)
  sim = phosphenes.Simulator.create(p, [-3.0, 3.0], [0.0, 0.0], thresholds=[1e-9, 1.0],
                                    options=AMPLITUDE)
  state, frame = sim.update(sim.init_state(), jnp.full((2,), 1e-4))
  image = np.asarray(sim.render(frame))
  assert float(frame.intensity[0]) > 0.3 and float(frame.intensity[1]) == 0.0
  assert image[:, : RES // 2].max() > 0.3  # Left phosphene (x < 0) visible.
  assert image[:, 3 * RES // 4 - 4: 3 * RES // 4 + 4].max() < 1e-6  # Right one not.
  with pytest.raises(ValueError, match="thresholds"):
    phosphenes.Simulator.create(p, [0.0], [0.0], thresholds=[1.0, 2.0])
  sim_rand = phosphenes.Simulator.create(p, np.zeros(500), np.zeros(500),
                                         key=jax.random.PRNGKey(3))
  thr = np.asarray(sim_rand.thresholds)
  assert thr.min() >= 0 and abs(np.median(thr) - 9.14e-8) < 1.5e-8


def test_out_of_view_removed_and_inputs_untouched():
  p = _params()
  x = np.array([0.0, 20.0, -7.9, 8.0])
  y = np.array([0.0, 0.0, 7.9, 0.0])
  x_before, y_before = x.copy(), y.copy()
  sim = phosphenes.Simulator.create(p, x, y, thresholds=None)
  np.testing.assert_array_equal(np.asarray(sim.kept), [True, False, True, False])
  assert sim.num_phosphenes == 2
  np.testing.assert_array_equal(x, x_before)
  np.testing.assert_array_equal(y, y_before)


def _loss_after(sim, amps, weights):
  images = sim.run(amps)
  return jnp.sum(images[-1] * weights)


def test_gradient_through_time_matches_finite_differences():
  with jax.enable_x64(True):
    p = _params(run__dtype="float64", size__current_spread=675e-6 / 50)
    sim = phosphenes.Simulator.create(p, [-2.0, 1.5, 3.0], [1.0, -2.0, 2.5])
    assert sim.x_deg.dtype == jnp.float64
    amps = jnp.asarray(np.random.default_rng(0).uniform(60e-6, 150e-6, (5, 3)))
    weights = jnp.asarray(np.random.default_rng(1).uniform(0, 1, (RES, RES)))
    grad = jax.grad(_loss_after, argnums=1)(sim, amps, weights)
    assert np.all(np.isfinite(grad))
    assert np.abs(grad[0]).max() > 0  # Frame 0 reaches frame 4.
    h = 1e-9
    for i in range(3):
      e = jnp.zeros_like(amps).at[0, i].set(h)
      fd = (_loss_after(sim, amps + e, weights) - _loss_after(sim, amps - e, weights)) / (2 * h)
      np.testing.assert_allclose(grad[0, i], fd, rtol=1e-4)


def test_zero_amplitude_gradient_is_finite_only_when_corrected():
  p = _params()
  amps = jnp.array([[100e-6], [0.0]])
  weights = jnp.ones((RES, RES))
  for compat, finite in ((True, False), (False, True)):
    sim = phosphenes.Simulator.create(
        p, [2.0], [1.0], options=DYNAPHOS if compat else phosphenes.Options())
    grad = jax.grad(_loss_after, argnums=1)(sim, amps, weights)
    assert bool(np.all(np.isfinite(grad))) == finite
  sim = phosphenes.Simulator.create(p, [2.0], [1.0], options=AMPLITUDE)
  grad = jax.grad(_loss_after, argnums=1)(sim, amps, weights)
  assert np.all(np.isfinite(grad))


def test_size_follows_activation_keeps_phosphene_after_stimulation():
  p = _params(size__current_spread=675e-6 / 150)
  amps = jnp.array([[150e-6], [150e-6], [0.0]])
  old = phosphenes.Simulator.create(p, [2.0], [1.0], options=DYNAPHOS)
  new = phosphenes.Simulator.create(p, [2.0], [1.0])
  old_images, old_state = old.run(amps, return_state=True)
  new_images = new.run(amps)
  assert float(old_state.activation[0]) > 1e-7  # Tissue still active...
  assert float(old_images[2].max()) < 1e-6  # ...yet dynaphos shows nothing.
  assert float(new_images[2].max()) > 0.1
  # Under constant stimulation (and a constant trace) the size current
  # converges to the amplitude, dynaphos' size.
  steady = phosphenes.Simulator.create(
      _params(temporal_dynamics__trace_increase_rate=0.0), [2.0], [1.0])
  state = steady.init_state()
  for _ in range(60):
    state, frame = steady.update(state, jnp.array([150e-6]))
  np.testing.assert_allclose(float(frame.size_current[0]), 150e-6, rtol=1e-4)


def test_sigmoid_size_unit_fix():
  p = _params(size__size_equation="sigmoid")
  amps = [20e-6, 40e-6, 80e-6, 160e-6]
  sigmas = {}
  for compat in (True, False):
    sim = phosphenes.Simulator.create(
        p, np.ones(4), np.ones(4),
        options=DYNAPHOS if compat else AMPLITUDE)
    sigmas[compat] = np.asarray(sim.frame(sim.init_state(), jnp.asarray(amps)).sigma)
  assert np.ptp(sigmas[True]) / sigmas[True].mean() < 1e-3  # Flat: the bug.
  assert sigmas[False][-1] / sigmas[False][0] > 5
  mag = _magnification(p, math.sqrt(2))
  expected = 0.5 * 0.7 / (1 + math.exp(-0.08 * (40 - 40))) * 0.5 / mag
  np.testing.assert_allclose(sigmas[False][1], expected, rtol=1e-5)


def test_surrogate_threshold_gradient():
  p = _params(thresholding__use_threshold=True)
  thr = [3e-7]  # Above what one frame reaches.
  amps = jnp.array([[120e-6]])
  weights = jnp.ones((RES, RES))
  exact = phosphenes.Simulator.create(p, [1.0], [1.0], thresholds=thr)
  surrogate = phosphenes.Simulator.create(p, [1.0], [1.0], thresholds=thr,
                                          options=phosphenes.Options(
                                              threshold_gradient="sigmoid",
                                              surrogate_width=1e-7))
  np.testing.assert_array_equal(exact.run(amps), surrogate.run(amps))
  assert float(jnp.abs(jax.grad(_loss_after, argnums=1)(exact, amps, weights)).max()) == 0
  assert float(jax.grad(_loss_after, argnums=1)(surrogate, amps, weights)[0, 0]) > 0


def _dense_reference(p, sim, mask):
  gx = np.asarray(sim.grid_x)
  gy = np.asarray(sim.grid_y)
  x = np.asarray(sim.x_deg)[:, None, None]
  y = np.asarray(sim.y_deg)[:, None, None]
  d = np.sqrt((gx[None, None, :] - x) ** 2 + (gy[None, :, None] - y) ** 2)
  if p["sampling"]["sampling_method"] == "center":
    flat = d.reshape(d.shape[0], -1).argmin(-1)
    return mask.reshape(-1)[flat]
  inside = d < (p["sampling"]["RF_size"] / np.asarray(sim.magnification))[:, None, None]
  return np.max(inside * mask[None], axis=(-2, -1))


@pytest.mark.parametrize("method", ["center", "receptive_fields"])
def test_sample_stimulus_matches_dense_reference(method):
  p = _params(sampling__sampling_method=method, run__view_angle=30.0, sampling__RF_size=2.0)
  x, y = phosphenes.phosphenes_by_magnification(p, 150, key=jax.random.PRNGKey(2))
  sim = phosphenes.Simulator.create(p, x, y)
  mask = np.random.default_rng(0).random((RES, RES)).astype(np.float32)
  got = np.asarray(sim.sample_stimulus(jnp.asarray(mask)))
  np.testing.assert_array_equal(got, _dense_reference(p, sim, mask))
  if method == "receptive_fields":
    assert np.asarray(sim.window_inside).sum(axis=(1, 2)).max() > 4  # Real discs.
  u8 = (mask * 255).astype(np.uint8)
  scaled = np.asarray(sim.sample_stimulus(u8[None], rescale=True))[0]
  ref = _dense_reference(p, sim, u8.astype(np.float32) * (1 / 255)) * 100e-6
  np.testing.assert_allclose(scaled, ref, rtol=1e-6)
  with pytest.raises(ValueError, match="mask must be"):
    sim.sample_stimulus(np.zeros((RES, RES + 1), np.float32))


def test_gabor_phosphenes_render_elongated():
  p = _params(gabor__gabor_filtering=True, gabor__gamma=2.0,
              size__current_spread=675e-6 / 150)
  gx, gy = _grid(p)
  sim = phosphenes.Simulator.create(p, [gx[52]], [gy[32]], theta=[0.0],
                                    options=AMPLITUDE)
  _, image = sim.step(sim.init_state(), jnp.array([150e-6]))
  image = np.asarray(image)
  assert np.unravel_index(np.argmax(image), image.shape) == (32, 52)
  # theta = 0: gamma stretches the distance along y, so the blob is
  # narrower in y than in x.
  assert image[32, 55] > 2 * image[35, 52] > 0
  with pytest.raises(ValueError, match="theta"):
    phosphenes.Simulator.create(_params(), [0.0], [0.0], theta=[0.0])


def test_options_is_one_frozen_hashable_value():
  compat = phosphenes.Options.dynaphos_compatible()
  assert (compat.size_follows, compat.safe_size_gradient, compat.sigmoid_size_microamps,
          compat.min_one_substep) == ("amplitude", False, False, False)
  assert phosphenes.Options.dynaphos_compatible(safe_size_gradient=True).safe_size_gradient
  assert hash(compat) == hash(phosphenes.Options.dynaphos_compatible())
  with pytest.raises(ValueError, match="size_follows"):
    phosphenes.Options(size_follows="current")
  with pytest.raises(ValueError, match="surrogate_width"):
    phosphenes.Options(surrogate_width=0.0)
  # The surrogate width defaults to the threshold spread of the parameters.
  p = _params(thresholding__use_threshold=True)
  sim = phosphenes.Simulator.create(p, [1.0], [1.0])
  assert sim.config.options.surrogate_width == p["thresholding"]["activation_threshold_sd"]
