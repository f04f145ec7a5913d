"""Readability statistics, budgets, pictoriality and assembly (fast: no reader trained)."""

import numpy as np
import pytest

from triplet_pose import metrics
from triplet_pose.readability import assemble
from triplet_pose.readability import benchmark
from triplet_pose.readability import pictoriality
from triplet_pose.readability import representations as reps
from triplet_pose.readability import stats
from triplet_pose.readability import tables


def test_per_figure_pckh_averages_to_the_projects_mean():
  rng = np.random.default_rng(0)
  truth = rng.uniform(50, 200, (12, 16, 2))
  read = truth + rng.normal(0, 8, truth.shape)
  head = np.full(12, 20.0)
  per = stats.per_figure_pckh(read, truth, head)
  assert per.shape == (12,)
  whole = metrics.pckh(read, truth, np.ones((12, 16)), head)["Mean"]
  assert per.mean() == pytest.approx(whole)


def test_summary_is_in_percent_with_a_ci_around_the_mean():
  rng = np.random.default_rng(1)
  scores = rng.uniform(0.2, 0.6, (3, 50))
  s = stats.summary(scores, samples=300)
  assert s["mean"] == pytest.approx(100 * scores.mean())
  assert s["ci95"][0] < s["mean"] < s["ci95"][1]
  np.testing.assert_allclose(s["per_seed"], 100 * scores.mean(axis=1))
  # One seed and identical figures: no spread at all.
  flat = stats.summary(np.full((1, 10), 0.5), samples=50)
  assert flat["ci95"] == [50.0, 50.0]


def test_paired_test_pairs_the_figures():
  # Figures differ widely; A is B plus 2 points on every figure. Paired, the
  # difference is certain; resampled apart (unpaired), it would be lost in
  # the figures' spread.
  rng = np.random.default_rng(2)
  b = rng.uniform(0.0, 0.9, (3, 200))
  a = b + 0.02
  test = stats.paired(a, b, samples=300, permutations=500)
  assert test["difference"] == pytest.approx(2.0)
  assert test["ci95"][0] > 0 and test["p"] < 0.01
  assert stats.ordering("A", "B", test) == "A > B"
  assert stats.ordering("B", "A", stats.paired(b, a, samples=300)) == "B < A"
  same = stats.paired(b, b + rng.normal(0, 0.05, b.shape), samples=300)
  assert stats.ordering("A", "B", same) == stats.NO_DIFFERENCE


def test_draw_is_chunked_and_uint8_matches_float(monkeypatch, tmp_path):
  config = benchmark.benchmark_config("smoke")
  from triplet_pose.readability import data as rdata
  config.num_validation = 7
  split = rdata.make_split(config, "validation")
  rep = reps.get("silhouette")
  whole = reps.draw(rep, split, image_size=(256, 256), output_size=(64, 64), line_width=1.5,
                    batch_size=64)
  seen = []
  real = reps.phosphenes.render_pose
  monkeypatch.setattr(reps.phosphenes, "render_pose",
                      lambda points, **kw: seen.append(len(points["contour"])) or real(
                          points, **kw))
  small = reps.draw_uint8(rep, split, image_size=(256, 256), output_size=(64, 64),
                          line_width=1.5, batch_size=3)
  # Never more than a chunk drawn at once: a whole split of silhouettes
  # held ~10 MB per figure while drawn (16 GB for the full grid).
  assert max(seen) <= 3 and sum(seen) == 7
  assert small.dtype == np.uint8 and small.shape == (7, 64, 64)
  np.testing.assert_array_equal(small, np.round(whole * 255).astype(np.uint8))


def test_budget_caps_charge_and_electrodes():
  sim = reps.build_simulator(100, seed=0, resolution=32)
  rng = np.random.default_rng(3)
  amplitude = rng.uniform(0, 100e-6, (4, sim.num_phosphenes)).astype(np.float32)
  charge = np.asarray(reps.charge_per_frame(sim, amplitude))
  c = sim.config
  np.testing.assert_allclose(charge, amplitude.sum(1) * c.pw_default * c.freq_default / c.fps
                             * 1e6, rtol=1e-5)
  few = reps.apply_budget(sim, amplitude, charge=None, electrodes=10)
  assert np.all(np.asarray(reps.active_electrodes(sim, few)) == 10)
  # Ties (a saturated encoder): still exactly 10 on.
  saturated = reps.apply_budget(sim, np.full_like(amplitude, 100e-6), charge=None,
                                electrodes=10)
  assert np.all(np.asarray(reps.active_electrodes(sim, saturated)) == 10)
  kept = np.sort(amplitude, axis=1)[:, -10:]  # the 10 largest, untouched
  np.testing.assert_allclose(np.sort(np.asarray(few), axis=1)[:, -10:], kept)
  capped = reps.apply_budget(sim, amplitude, charge=float(charge.min()) / 2, electrodes=None)
  np.testing.assert_allclose(np.asarray(reps.charge_per_frame(sim, capped)),
                             charge.min() / 2, rtol=1e-4)
  # Within the budget: unchanged.
  same = reps.apply_budget(sim, amplitude, charge=float(charge.max()) * 2, electrodes=None)
  np.testing.assert_allclose(np.asarray(same), amplitude)


def test_pictoriality_of_the_silhouette_itself_and_of_nothing():
  body = np.zeros((2, 16, 16), np.uint8)
  body[:, 4:12, 6:10] = 255
  self_overlap = pictoriality.pictoriality(body, body)
  assert self_overlap["iou"] == pytest.approx(1.0)
  assert self_overlap["ssim"] == pytest.approx(1.0, abs=1e-4)
  scatter = np.zeros_like(body)
  scatter[:, ::4, ::4] = 255  # lit all over the field, mostly off the body
  off = pictoriality.pictoriality(scatter, body)
  assert off["iou"] < 0.2 and off["ssim"] < 0.5


def _fake_runs(config, better: str, by: float):
  rng = np.random.default_rng(4)
  base = rng.uniform(0.1, 0.8, 60)
  runs = {}
  for protocol in ("ideal", "common"):
    for name in config.representations:
      for n in config.num_phosphenes:
        for seed in config.seeds:
          lift = by if name == better and protocol == "ideal" else 0.0
          scores = np.clip(base + lift + rng.normal(0, 0.01, 60), 0, 1)
          run = {"true": list(scores), "predicted": None, "seconds": 1.0}
          if protocol == "ideal":
            run["transfer"] = {str(o): list(scores) for o in config.num_phosphenes if o != n}
          else:
            run["equal_budget"] = list(scores)
          runs[assemble.run_key(protocol, name, n, 0, seed)] = run
  return runs


def test_assemble_writes_the_named_fields_and_claims_only_what_the_ci_shows():
  config = benchmark.benchmark_config("smoke")
  config.representations = ("joints", "silhouette")
  config.num_phosphenes = (100, 300)
  config.seeds = (0, 1, 2)
  config.bootstrap = 200
  results = {"chance": {"Mean": 0.1}, "conditions": {
      f"L0/{name}/{n}": {"budget": {"active_electrodes": 5.0, "charge_per_frame": 0.5},
                         "pictoriality": {"iou": 0.3, "ssim": 0.4}}
      for name in config.representations for n in config.num_phosphenes}}
  assemble.assemble(results, _fake_runs(config, "silhouette", 0.1), config)
  assert len(results["cells"]) == 2 * 2 * 2  # protocols x representations x N (true pose)
  for cell in results["cells"]:
    assert {"representation", "num_phosphenes", "protocol", "pose", "pckh",
            "active_electrodes", "charge_per_frame", "pictoriality", "seconds"} <= set(cell)
    assert len(cell["pckh"]["per_seed"]) == 3 and len(cell["pckh"]["ci95"]) == 2
    assert cell["seconds"] == 3.0
  assert {"active_electrodes", "charge_per_frame"} <= set(results["units"])
  verdicts = {(t["protocol"], t["num_phosphenes"]): t["verdict"]
              for t in results["comparisons"] if "representation" not in t}
  assert verdicts[("ideal", 100)] == "joints < silhouette"
  assert verdicts[("common", 100)] == stats.NO_DIFFERENCE
  text = tables.format_tables(results)
  assert "N=100: silhouette > joints" in text  # ideal: the CI excludes zero
  assert "N=100: joints = silhouette" in text or "N=100: silhouette = joints" in text
  assert "ideal says joints < silhouette" in text  # where the protocols disagree


def test_readers_answer_experiment_trials_through_the_shared_choice_rule(tmp_path):
  import jax
  import jax.numpy as jnp
  from flax import serialization
  from triplet_pose.readability import cells
  from triplet_pose.readability import observer
  from triplet_pose.readability import protocols
  from triplet_pose.readability import trials
  config = benchmark.benchmark_config("smoke")
  oc = config.observer
  variables = observer.create_observer(oc).init(
      jax.random.PRNGKey(0), jnp.zeros((1, oc.image_size, oc.image_size, 1)), train=False)
  reader = jax.tree.map(np.asarray, {"observer": variables, "front": {}, "loss": 0.0})
  path = protocols.reader_path(tmp_path, "common", seed=0)
  path.parent.mkdir(parents=True)
  path.write_bytes(serialization.msgpack_serialize(reader))
  rng = np.random.default_rng(5)
  stimuli = {f"s{i}.png": rng.integers(0, 255, (128, 128), dtype=np.uint8) for i in range(3)}
  items = [{"id": f"choice/{i}", "task": "choice", "stimulus": f"s{i}.png", "answer": i % 4,
            "condition": "joints/100", "representation": "joints", "num_phosphenes": 100}
           for i in range(3)] + [{"id": "click/0", "task": "click", "stimulus": "s0.png"}]
  read = cells.read(reader, np.stack([trials.prepare_image(stimuli[f"s{i}.png"], oc.image_size)
                                      for i in range(3)]), config=config)
  # Candidates: the pose read, scaled and moved (the rule ignores both), at
  # the item's answer; three other poses elsewhere.
  def candidates(item):
    i = int(item["id"].split("/")[1])
    poses = [rng.uniform(0, 256, (16, 2)) for _ in range(4)]
    poses[item["answer"]] = read[i] * 1.5 + 7.0
    return np.stack(poses)
  rows = trials.answer_manifest(items, load_image=stimuli.__getitem__, candidates=candidates,
                                benchmark_workdir=tmp_path, config=config)
  # No ideal reader was kept: only the common reader answers; only choice items.
  assert [r["observer"] for r in rows] == ["common/s0"] * 3
  assert all(r["correct"] and r["choice"] == r["answer"] for r in rows)
