"""The readability benchmark: representations, phosphene images, observer sanity, launch.

The sanity checks of the instrument train small observers (marked slow):
on unrendered joint masks the observer must read the pose (PCKh >= 0.9), on
blank images it must sit at chance (the mean pose), and silhouette PCKh
must not fall from 300 to 3000 phosphenes beyond run-to-run spread.
"""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from triplet_pose import metrics
from triplet_pose.readability import benchmark
from triplet_pose.readability import cells
from triplet_pose.readability import data as rdata
from triplet_pose.readability import observer
from triplet_pose.readability import representations as reps


@pytest.fixture(scope="module")
def small_data():
  config = benchmark.benchmark_config("smoke")
  config.num_train, config.num_validation = 6, 4
  return config, {"train": rdata.make_split(config, "train"),
                  "validation": rdata.make_split(config, "validation"), "predicted": {}}


def test_every_drawn_representation_draws_something_distinct(small_data):
  config, data = small_data
  masks = {}
  for rep in reps.REGISTRY.values():
    if rep.kind == "learned":
      continue
    m = reps.draw(rep, data["validation"], image_size=(256, 256), output_size=(64, 64),
                  line_width=1.5)
    assert m.shape == (4, 64, 64) and m.dtype == np.float32
    assert 0.0 <= m.min() and m.max() <= 1.0 and m.mean() > 0.005, rep.name
    masks[rep.name] = m
  # Each representation shows something the others do not (no two alike).
  # ('nearest' only differs where limbs overlap: a little in 4 figures.)
  names = list(masks)
  for i, a in enumerate(names):
    for b in names[i + 1:]:
      least = 0.1 if {a, b} == {"triplet", "triplet_nearest"} else 0.5
      assert np.abs(masks[a] - masks[b]).max() > least, (a, b)
  # 'nearest' only takes away what lies behind a nearer limb.
  assert masks["triplet_nearest"].sum() < masks["triplet"].sum()
  # The silhouette covers more than the lines it is made of.
  assert masks["silhouette"].mean() > 1.5 * masks["triplet"].mean()


def test_unknown_representation_is_named():
  with pytest.raises(ValueError, match="known: image_edges, joints"):
    reps.get("stick_figure")


def test_stimulate_is_the_last_frame_of_run():
  sim = reps.build_simulator(100, seed=0, resolution=32)
  mask = jnp.zeros((32, 32)).at[8:24, 10:14].set(1.0)
  amplitude = sim.sample_stimulus(mask, rescale=True)
  frames = sim.run(jnp.broadcast_to(amplitude, (4,) + amplitude.shape))
  still = reps.stimulate(sim, amplitude, frames=4)
  np.testing.assert_allclose(np.asarray(still), np.asarray(frames[-1]), atol=1e-6)
  assert float(still.max()) > 0.0
  # Brightness builds up: fewer frames give a different (dimmer) image.
  assert float(reps.stimulate(sim, amplitude, frames=1).sum()) < float(still.sum())


def test_simulator_electrodes_do_not_depend_on_gradient_options():
  plain = reps.build_simulator(300, seed=3, resolution=32)
  surrogate = reps.build_simulator(300, seed=3, resolution=32, options=reps.phosphenes.Options(
      threshold_gradient="sigmoid"))
  for field in ("x_deg", "y_deg", "thresholds"):
    np.testing.assert_array_equal(getattr(plain, field), getattr(surrogate, field))
  other = reps.build_simulator(300, seed=4, resolution=32)
  assert not np.array_equal(plain.x_deg, other.x_deg)


def test_learned_encoder_gets_gradients_through_the_simulator():
  sim = reps.build_simulator(100, seed=0, resolution=64, options=reps.phosphenes.Options(
      threshold_gradient="sigmoid"))
  config = observer.observer_config()
  encoder = observer.Encoder(4, sim)
  front = observer.learned_front(encoder, config=config, source_size=256, frames=3)
  points = jnp.asarray(np.random.default_rng(0).uniform(40, 200, (2, 42, 2)), jnp.float32)
  maps = observer.pose_heatmaps(points, source_size=256, size=64, sigma=2.0)
  params = encoder.init(jax.random.PRNGKey(0), maps)["params"]
  amplitude = encoder.apply({"params": params}, maps)
  assert amplitude.shape == (2, sim.num_phosphenes)
  assert 0.0 <= float(amplitude.min()) and float(amplitude.max()) <= 100e-6
  images = front(params, points)
  assert images.shape == (2, 64, 64) and float(images.max()) > 0.0
  grads = jax.grad(lambda p: jnp.sum(front(p, points)))(params)
  norms = [float(jnp.linalg.norm(g)) for g in jax.tree.leaves(grads)]
  assert all(np.isfinite(norms)) and max(norms) > 0.0


def _sanity_config(steps):
  config = benchmark.benchmark_config("full")
  config.num_train, config.num_validation = 1500, 100
  config.observer.steps = steps
  return config


# The observer's sanity checks train three observers on 1,500 figures: more
# than 20 minutes on 2 CPU cores, too long for every CI run. They run with
# TRIPLET_POSE_LONG_TESTS=1 (python -m pytest -q tests/test_readability_benchmark.py).
long_test = pytest.mark.skipif(
    os.environ.get("TRIPLET_POSE_LONG_TESTS") != "1",
    reason="observer sanity checks take >20 min on 2 cores; set TRIPLET_POSE_LONG_TESTS=1")


@pytest.fixture(scope="module")
def sanity_data(tmp_path_factory):
  config = _sanity_config(steps=0)
  return rdata.load_data(config, tmp_path_factory.mktemp("readability_data"))


@pytest.mark.slow
@long_test
def test_observer_reads_unrendered_joint_masks(sanity_data):
  # The dedicated setting: 3x the grid's steps (500 steps give 0.77, 1200
  # gave 0.93: Wrist 0.66, Elbow 0.92, all other groups >= 0.95).
  config = _sanity_config(steps=1200)
  cell = cells.run_cell(reps.get("joints"), 0, sanity_data, config=config)
  assert cell["ground_truth"]["Mean"] >= 0.9, cell["ground_truth"]


@pytest.mark.slow
@long_test
def test_observer_on_blank_images_is_at_chance(sanity_data):
  config = _sanity_config(steps=200)
  train, val = sanity_data["train"], sanity_data["validation"]
  trained = observer.train(np.zeros((len(train["joints"]), 64, 64), np.float32),
                           train["joints"], config=config.observer, seed=0, source_size=256)
  joints, _ = observer.predict(trained, np.zeros((len(val["joints"]), 64, 64), np.float32),
                               config=config.observer, source_size=256)
  blank = metrics.pckh(joints, val["joints"], np.ones(val["joints"].shape[:2]),
                       val["head_size"])["Mean"]
  chance = cells.chance(sanity_data)["Mean"]
  assert abs(blank - chance) <= 0.1, (blank, chance)
  assert blank < 0.3


@pytest.mark.slow
@long_test
def test_silhouette_does_not_fall_with_more_phosphenes(sanity_data):
  config = _sanity_config(steps=400)  # the grid's
  silhouette = reps.get("silhouette")
  masks = cells.observer_inputs(silhouette, sanity_data, config=config)
  cell = lambda n, seed: cells.run_cell(silhouette, n, sanity_data, config=config,
                                        inputs=masks, seed=seed)["ground_truth"]["Mean"]
  low = [cell(300, 0), cell(300, 1)]
  high = cell(3000, 0)
  spread = max(abs(low[0] - low[1]), 0.05)  # run-to-run spread, at least 5 points
  assert high >= np.mean(low) - 2 * spread, (low, high)


def _launch(workdir, *extra):
  return subprocess.run(
      [sys.executable, "-m", "launch.readability", f"--workdir={workdir}",
       "--config=configs/readability.py:size=smoke", *extra],
      capture_output=True, text=True, timeout=900, check=False)


@pytest.mark.slow
def test_launch_smoke_grid_writes_outputs_and_resumes(tmp_path, workdirs):
  out = _launch(tmp_path, f"--joint_workdir={workdirs['joint']}",
                f"--triplet_workdir={workdirs['triplet']}")
  assert out.returncode == 0, out.stderr[-3000:]
  results = json.loads((tmp_path / "results.json").read_text())
  assert set(results["cells"]) == {"image_edges/100", "joints/100", "learned/100"}
  for key, cell in results["cells"].items():
    assert 0.0 <= cell["ground_truth"]["Mean"] <= 1.0
    assert cell["predicted"] is not None and cell["ssim"] is not None, key
  # Image edges do not depend on the pose: the predicted row is the true one.
  edges = results["cells"]["image_edges/100"]
  assert edges["predicted"] == edges["ground_truth"] and edges["ssim"] == 1.0
  for name in ("table.txt", "pckh_vs_phosphenes.png", "examples.png",
               "examples/joints_100.npy", "examples/learned_mask.npy"):
    assert (tmp_path / name).is_file(), name
  table = (tmp_path / "table.txt").read_text()
  assert "From the predicted pose" in table
  block = results["provenance"]
  assert block["models"] == {role: {"workdir": str(workdirs[role]), "step": 2}
                             for role in ("joint", "triplet")}
  assert block["dataset"]["examples"] == results["config"]["num_validation"]
  assert (tmp_path / block["config"]["file"]).is_file()
  assert f"Model joint: {workdirs['joint']}, step 2" in table and "Code: triplet_pose" in table
  # A second run resumes: every cell is kept, none is trained again.
  again = _launch(tmp_path, f"--joint_workdir={workdirs['joint']}",
                  f"--triplet_workdir={workdirs['triplet']}")
  assert again.returncode == 0, again.stderr[-3000:]
  assert "observer step" not in again.stderr
  resumed = json.loads((tmp_path / "results.json").read_text())
  assert resumed["cells"] == results["cells"]
  assert resumed["provenance_earlier"] == [block]  # the first run's, kept
  # Other pose models (none) in the same workdir are refused.
  other = _launch(tmp_path)
  assert other.returncode == 2 and "another config" in other.stderr
