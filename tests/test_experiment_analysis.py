"""Known answer: `analyze` recovers the thresholds programmed into virtual participants.

Fifty virtual participants (`experiment.participants`, through the HTTP API
of an in-process server) answer with accuracies that follow a psychometric
function of log10 N with known thresholds; 10% of them answer at random.
The analysis must exclude those by its catch-trial rule and find each
programmed threshold inside its 95% bootstrap CI. The manifest is built
without images (the analysis never looks at a pixel).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from triplet_pose.experiment import analysis
from triplet_pose.experiment import design
from triplet_pose.experiment import participants
from triplet_pose.experiment import server
from triplet_pose.experiment import stimuli


def _config():
  c = design.experiment_config("quick")
  c.num_phosphenes = (30, 100, 300, 1000, 3000)
  c.choice_figures = 60  # 6 per condition per participant
  c.click_block = False
  c.catch_trials = 6
  c.analysis.bootstrap = 200
  return c


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("known_answer")
  config = _config()
  stimuli.build(config, workdir, images=False, log=lambda m: None)
  (workdir / design.STIMULI).mkdir()
  url = f"sqlite:///{workdir / 'r.sqlite'}"
  app = server.create_app(workdir, url)
  summary = participants.simulate(workdir, url="http://experiment", count=50, app=app,
                                  concurrency=10)
  app.state.experiment.store.close()
  assert summary["finished"] == 50 and not summary["errors"]
  results = analysis.analyze(workdir, url, out=workdir / "analysis")
  return config, summary, results, workdir


def test_thresholds_recovered_within_their_cis(simulated):
  config, _, results, _ = simulated
  fits = results["choice"]["fits"]
  assert set(fits) == set(config.representations)
  for rep, programmed in config.simulate.thresholds.items():
    lo, hi = fits[rep]["threshold_ci_n"]
    assert lo <= programmed <= hi, (rep, programmed, fits[rep])
    assert hi / lo < 4  # a CI that says something


def test_accuracy_cis_cover_the_programmed_accuracy(simulated):
  config, _, results, _ = simulated
  s = config.simulate
  missed = 0
  for cond, cell in results["choice"]["cells"].items():
    rep, n = cond.split("/")
    p = analysis.psychometric(math.log10(int(n)), threshold=math.log10(s.thresholds[rep]),
                              slope=s.slope, lapse=s.lapse)
    missed += not cell["ci"][0] <= p <= cell["ci"][1]
  assert missed <= 1  # 95% intervals: about one miss in 20 is expected


def test_catch_rule_excludes_the_careless(simulated):
  _, summary, results, _ = simulated
  careless = {o.participant_id for o in summary["outcomes"] if o.careless}
  assert careless and careless <= set(results["excluded"])
  assert len(set(results["excluded"]) - careless) <= 2


def test_mixed_model_and_outputs(simulated):
  _, _, results, workdir = simulated
  fixed = results["mixed_model"]["fixed"]
  assert fixed["log10_n"]["mean"] > 0  # accuracy rises with N
  assert set(results["mixed_model"]["random_sd"]) == {"participant", "figure"}
  for name in ("results.json", "table.txt", "psychometric.png"):
    assert (workdir / "analysis" / name).stat().st_size > 0
  assert "Thresholds" in results["text"]


def test_fit_and_error_consistency_on_known_inputs():
  x = np.log10([30, 100, 300, 1000, 3000])
  p = analysis.psychometric(x, threshold=2.5, slope=4.0, lapse=0.02)
  n = np.full(5, 100000)
  fit = analysis.fit_psychometric(x, p * n, n)
  assert abs(fit["threshold"] - 2.5) < 0.01 and abs(fit["slope"] - 4.0) < 0.1
  a = np.array([1, 1, 0, 0, 1, 0, 1, 0], bool)
  assert analysis.error_consistency(a, a) == pytest.approx(1.0)
  assert analysis.error_consistency(a, ~a) < 0


def test_observer_answers_the_same_trials(tmp_path_factory):
  """A tiny observer (2 steps: the plumbing, not its skill) answers every main item."""
  import copy  # pylint: disable=g-import-not-at-top
  from triplet_pose.experiment import observer_answers  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.getbasetemp() / "experiment_quick"
  config = design.experiment_config("quick")
  if not (workdir / design.MANIFEST).exists():
    stimuli.build(config, workdir, log=lambda m: None)
  config.observer.update(steps=2, num_train=8)
  config.observer.image_size, config.observer.hourglass_depth = 32, 1
  config.observer.num_features, config.observer.batch_size = 16, 4
  config.observer.eval_batch_size = 16
  manifest = copy.deepcopy(design.load_manifest(workdir))
  condition = manifest["design"]["conditions"][0]  # one observer: the plumbing is the same
  manifest["design"]["conditions"] = [condition]
  observer_answers.add_to_manifest(config, manifest, workdir, pool=stimuli.pose_pool(config),
                                   log=lambda m: None)
  main = [i for i in manifest["items"].values() if i["phase"] == "main"]
  assert all(("observer" in i) == (i["condition"] == condition) for i in main)
  main = [i for i in main if i["condition"] == condition]
  assert {i["task"] for i in main} == {"choice", "click"}
  for item in main:
    if item["task"] == "choice":
      assert 0 <= item["observer"]["choice"] < 4
    else:
      assert np.all((np.asarray(item["observer"]["clicks"]) >= 0)
                    & (np.asarray(item["observer"]["clicks"]) < item["size"]))
  assert manifest["observer"]["steps"] == 2
