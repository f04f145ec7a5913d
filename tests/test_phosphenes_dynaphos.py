"""Equivalence with dynaphos (the PyTorch reference); skipped without it.

Same params, coordinates, thresholds and a 20-frame stimulus sequence give
the same images to 1e-4 (the remaining difference is the float32 rounding
of torch.linspace versus numpy.linspace in the pixel grid).
"""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

from triplet_pose import phosphenes

torch = pytest.importorskip("torch")
pytest.importorskip("cv2")  # dynaphos.simulator imports OpenCV.
dsim = pytest.importorskip("dynaphos.simulator")
dcm = pytest.importorskip("dynaphos.cortex_models")
dut = pytest.importorskip("dynaphos.utils")

FRAMES = 20


def _params(model, method, *, gabor=False, res=(128, 128), batch=0):
  p = phosphenes.default_params()
  p["cortex_model"].update(model=model, noise_scale=0.0, dropout_rate=0.0)
  p["sampling"]["sampling_method"] = method
  p["gabor"]["gabor_filtering"] = gabor
  p["run"].update(gpu=None, resolution=list(res), batch_size=batch)
  return p


def _coordinates(p, rng):
  cx, cy = dcm.get_cortex_coordinates_grid(p["cortex_model"], 12, 12, x_max=40).cartesian
  vf = dcm.get_visual_field_coordinates_from_cortex_full(p["cortex_model"],
                                                          dut.Map(cx, cy), rng)
  x, y = vf.cartesian
  # dynaphos' dropout step permutes the electrodes even at rate 0: compare
  # the sets of positions.
  ours = phosphenes.phosphenes_from_cortex(p["cortex_model"], cx, cy, hemifield="both")
  key = lambda a, b: np.lexsort((np.round(b, 6), np.round(a, 6)))
  o, r = key(ours.x_deg, ours.y_deg), key(x, y)
  np.testing.assert_allclose(ours.x_deg[o], x[r], atol=1e-9)
  np.testing.assert_allclose(ours.y_deg[o], y[r], atol=1e-9)
  return np.array(x), np.array(y)


def _compare(p, *, seed=0, theta=None):
  rng = np.random.default_rng(seed)
  x, y = _coordinates(p, rng)
  kept = phosphenes.in_view(x, y, p["run"])
  if p["gabor"]["gabor_filtering"]:
    theta = rng.uniform(0, 2 * np.pi, int(kept.sum()))
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    ref = dsim.GaussianSimulator(p, dut.Map(x.copy(), y.copy()), rng, theta=theta)
  thresholds = ref.threshold.get().numpy().reshape(-1, ref.num_phosphenes)[0]
  sim = phosphenes.Simulator.create(p, x, y, thresholds=thresholds, theta=theta,
                                    options=phosphenes.Options.dynaphos_compatible())
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
  images = np.asarray(sim.run(amps))
  assert ref_images.max() > 0.5  # Phosphenes are visible...
  error = np.abs(images - ref_images).max()
  print(f"{p['cortex_model']['model']}/{p['sampling']['sampling_method']}"
        f"{'/gabor' if p['gabor']['gabor_filtering'] else ''}: {sim.num_phosphenes} "
        f"phosphenes, max abs image error over {FRAMES} frames {error:.2e}")
  assert error < 1e-4
  # ...and the activation state agrees at the end.
  _, state = sim.run(amps, return_state=True)
  np.testing.assert_allclose(np.asarray(state.activation).ravel(),
                             ref.activation.get().numpy().ravel(), rtol=1e-4, atol=1e-12)


@pytest.mark.parametrize("model", ["dipole", "wedge-dipole"])
@pytest.mark.parametrize("method", ["receptive_fields", "center"])
def test_matches_dynaphos(model, method):
  _compare(_params(model, method))


def test_matches_dynaphos_gabor_and_batch():
  _compare(_params("dipole", "receptive_fields", gabor=True, res=(96, 96)))
  _compare(_params("wedge-dipole", "center", res=(80, 64), batch=2))


@pytest.mark.parametrize("model", ["monopole", "dipole", "wedge-dipole"])
def test_layout_maps_match_dynaphos(model):
  p = _params(model, "center")["cortex_model"]
  z = dcm.get_visual_field_coordinates_grid().complex
  np.testing.assert_allclose(phosphenes.visual_field_to_cortex(z, p),
                             dcm.get_mapping_from_visual_field_to_cortex(p)(z), atol=1e-9)
  w = dcm.get_cortex_coordinates_default(p).complex
  np.testing.assert_allclose(phosphenes.cortex_to_visual_field(w, p),
                             dcm.get_mapping_from_cortex_to_visual_field(p)(w), atol=1e-9)
  r = np.linspace(0, 40, 50)
  np.testing.assert_allclose(phosphenes.cortical_magnification(r, p),
                             dcm.get_cortical_magnification(r, p))
  ours = phosphenes.cortex_grid(p, 5, 4, x_max=40)
  ref = dcm.get_cortex_coordinates_grid(p, 5, 4, x_max=40).cartesian
  np.testing.assert_allclose(ours, ref)
