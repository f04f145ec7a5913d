"""Evaluation: known answers through `evaluate_models`, settings, tables, launch.evaluate.

The known-answer tests run the real evaluation path (data iterator, jitted
flip-test inference, decoding, mapping back through `crop_to_original`,
head sizes, padding) with "oracle" models whose heatmaps are the rendered
ground truth of the image they are shown, optionally shifted by a known
number of pixels, and compare with PCKh computed by hand. The flip test
itself is tested in test_inference.py.
"""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from conftest import REPO
from triplet_pose import checkpointing
from triplet_pose import config_files
from triplet_pose import evaluation
from triplet_pose import evaluators
from triplet_pose import heatmaps as hm
from triplet_pose import inference
from triplet_pose import keypoints as kp
from triplet_pose import provenance
from triplet_pose import results as results_lib
from triplet_pose import train
from triplet_pose import transforms
from triplet_pose import workdir as workdir_lib

SIZE, HEATMAP = 64, 16  # configs/tiny.py
PERSONS, BATCH = 7, 3  # 3 batches, the last padded with 2 invalid examples


def _persons(seed=0, *, on_cells=False):
  """Ground truth of PERSONS people: points well inside the crop (with
  `on_cells`, on heatmap-cell centres, which decode exactly), head sizes of
  5..20 crop px, and crop->original affines of scale 0.5..4 with offsets."""
  rng = np.random.default_rng(seed)
  if on_cells:  # cell c of 16 covers crop pixels 4c - 0.5 .. 4c + 3.5
    point = lambda n: 4.0 * rng.integers(3, 13, (PERSONS, n, 2)) + 1.5  # pylint: disable=g-long-lambda
  else:
    point = lambda n: rng.uniform(14, 50, (PERSONS, n, 2))  # pylint: disable=g-long-lambda
  joints = point(kp.JOINTS.size).astype(np.float32)
  contour = point(kp.CONTOUR.size).astype(np.float32)
  joints_visible = (rng.uniform(size=(PERSONS, kp.JOINTS.size)) > 0.15).astype(np.float32)
  contour_visible = (rng.uniform(size=(PERSONS, kp.CONTOUR.size)) > 0.15).astype(np.float32)
  head = rng.uniform(5, 20, PERSONS).astype(np.float32)
  scale = rng.uniform(0.5, 4, PERSONS)
  offset = rng.uniform(-100, 300, (PERSONS, 2))
  affine = np.zeros((PERSONS, 2, 3), np.float32)
  affine[:, 0, 0] = affine[:, 1, 1] = scale
  affine[:, :, 2] = offset
  return dict(joints=joints, joints_visible=joints_visible, contour=contour,
              contour_visible=contour_visible, head_size=head, crop_to_original=affine)


def _batches(truth):
  """Batches of BATCH examples; image pixel (0, 0) and (0, W-1) hold the
  person's index, (1, 0) = 1 and (1, W-1) = 0 tell a mirrored image."""
  rows = []
  for i in range(0, PERSONS + (-PERSONS) % BATCH, BATCH):
    index = np.arange(i, i + BATCH)
    valid = index < PERSONS
    take = np.minimum(index, PERSONS - 1)
    image = np.full((BATCH, SIZE, SIZE, 3), 128, np.uint8)
    image[:, 0, 0, :] = image[:, 0, -1, :] = take[:, None]
    image[:, 1, 0, :], image[:, 1, -1, :] = 255, 0
    batch = {k: v[take] for k, v in truth.items()}
    rows.append({**batch, "image": image, "valid": valid})
  return rows


class _Oracle:
  """A 'network' predicting heatmaps of the ground truth (+ shift) of its input.

  The table holds, per person, the rendered heatmaps of the direct and of the
  mirrored image (whose truth is `KeypointSet.flip` of the person's).
  """

  def __init__(self, kset, points, shift):
    moved = points + np.asarray(shift, np.float32)
    render = lambda p: np.asarray(hm.render(  # pylint: disable=g-long-lambda
        hm.rescale_coordinates(jnp.asarray(p), SIZE, HEATMAP), height=HEATMAP))
    self.name = kset.name
    self.direct = render(moved)
    self.mirrored = render(kset.flip(moved, SIZE))

  def apply(self, variables, x, train=False):
    del variables, train
    index = jnp.round(x[:, 0, 0, 0] * 255).astype(jnp.int32)
    mirrored = x[:, 1, 0, 0] < 0.5
    maps = jnp.where(mirrored[:, None, None, None], jnp.asarray(self.mirrored)[index],
                     jnp.asarray(self.direct)[index])
    return {self.name: maps[:, None]}


def _loaded(target, oracle):
  config = tiny.get_config(f"target={target}")
  variables = {"params": {"w": np.zeros(3, np.float32)}, "batch_stats": {}}
  return workdir_lib.LoadedModel(config, oracle, variables, f"/oracle/{target}", 7)


def _evaluate(monkeypatch, truth, shift=(0.0, 0.0), *, flip_test=True):
  batches = _batches(truth)
  monkeypatch.setattr(evaluation.data, "create_iterator",
                      lambda *a, **k: iter([dict(b) for b in batches]))
  models = inference.PoseModels(
      joint=_loaded("joints", _Oracle(kp.JOINTS, truth["joints"], shift)),
      triplet=_loaded("contour", _Oracle(kp.CONTOUR, truth["contour"], shift)))
  options = evaluation.EvalOptions(batch_size=BATCH, flip_test=flip_test,
                                   timing_batches=0, phosphene_error=False)
  return evaluation.evaluate_models(models, tiny.get_config().input, options)


def _expected_pckh(truth, kset, shift):
  """PCKh by hand: every annotated point moved by `shift` crop pixels is
  correct iff |shift| <= 0.5 head sizes (the crop scale cancels)."""
  moved = np.hypot(*shift)
  correct = moved <= 0.5 * truth["head_size"]  # (persons,)
  visible = truth[kset.visible_key] > 0
  per_point = (correct[:, None] & visible).sum(0) / np.maximum(visible.sum(0), 1)
  mean_points = list(kset.pckh_mean)
  return {"Mean": (correct[:, None] & visible)[:, mean_points].sum()
                  / visible[:, mean_points].sum(),
          **{g: float(np.mean(per_point[list(m)])) for g, m in kset.pckh_groups.items()}}


@pytest.mark.parametrize("flip_test", [True, False], ids=["flip", "noflip"])
def test_oracle_heatmaps_score_100_percent_in_every_setting(monkeypatch, flip_test):
  truth = _persons()
  results = _evaluate(monkeypatch, truth, flip_test=flip_test)
  settings = results["settings"]
  assert list(settings) == [evaluation.JOINT, evaluation.TRIPLET_PREDICTED,
                            evaluation.TRIPLET_GT]
  assert results["persons"] == PERSONS  # the padding is not counted
  for name, row in settings.items():
    kset = kp.get(row["keypoints"])
    counts = row["counts"]
    assert sum(counts.values()) == int(truth[kset.visible_key].sum()), name
    assert row["groups"]["Mean"] == 1.0, name
    assert all(v == 1.0 for v in row["groups"].values() if np.isfinite(v)), name
  assert settings[evaluation.JOINT]["Mean16"] == 1.0


@pytest.mark.parametrize("cells", [(1, 0), (0, -2), (1, 1)])
def test_shifted_oracle_gives_the_hand_computed_pckh(monkeypatch, cells):
  truth = _persons(seed=1, on_cells=True)
  shift = 4.0 * np.asarray(cells, np.float32)  # heatmap cells -> crop pixels
  ratio = np.hypot(*shift) / truth["head_size"]
  assert np.all(np.abs(ratio - 0.5) > 1e-3), "no person on the threshold"
  assert 0 < np.sum(ratio <= 0.5) < PERSONS, "some pass, some fail"
  results = _evaluate(monkeypatch, truth, shift)
  for name, row in results["settings"].items():
    kset = kp.get(row["keypoints"])
    expected = _expected_pckh(truth, kset, shift)
    for group, value in expected.items():
      assert row["groups"][group] == pytest.approx(value, abs=1e-9), (name, group)


def test_pckh_metric_reads_crop_to_original_and_skips_padding():
  truth = _persons(seed=2)
  metric = evaluators.Pckh(kp.JOINTS)
  for batch in _batches(truth):
    # Predictions one head size away in original pixels for the first person
    # of every batch; exact for the others.
    pred = batch["joints"].copy()
    pred[0, :, 0] += batch["head_size"][0]
    batch["valid"] = batch["valid"].copy()
    metric.update(batch, {"keypoints": {"joints": pred}})
  report = metric.report()
  assert report["persons"] == PERSONS
  wrong = np.zeros(PERSONS, bool)
  wrong[::BATCH] = True
  visible = truth["joints_visible"] > 0
  mean = list(kp.JOINTS.pckh_mean)
  expected = (visible & ~wrong[:, None])[:, mean].sum() / visible[:, mean].sum()
  assert report["groups"]["Mean"] == pytest.approx(expected)
  scalars = metric.result()
  assert scalars["pckh_Mean"] == pytest.approx(expected) and "pckh_Mean@0.1" in scalars


def test_training_metrics_are_named_per_keypoint_set():
  names = [type(m).__name__ for m in evaluators.metrics_for(("loss", "pckh", "panel"),
                                                             (kp.JOINTS, kp.CONTOUR))]
  assert names == ["Loss", "Pckh", "Panel", "Pckh", "Panel"]
  contour_pckh = evaluators.metrics_for(("pckh",), (kp.JOINTS, kp.CONTOUR))[1]
  assert contour_pckh.prefix == "contour_pckh_"
  with pytest.raises(ValueError, match="unknown evaluation metrics"):
    evaluators.metrics_for(("pckh", "accuracy"), (kp.JOINTS,))


def test_to_original_and_crop_scale():
  affine = np.array([[[2.0, 0, 10], [0, 2.0, 20]]])
  np.testing.assert_allclose(transforms.to_original(np.array([[[1.0, 1.0]]]), affine),
                             [[[12.0, 22.0]]])
  np.testing.assert_allclose(transforms.crop_scale(affine), [2.0])


def test_triplet_evaluation_has_three_settings(workdirs, monkeypatch):
  made = []
  make = inference.make_inference_fn
  monkeypatch.setattr(inference, "make_inference_fn",
                      lambda *a, **kw: made.append(1) or make(*a, **kw))
  results = evaluation.evaluate_checkpoints(
      workdirs["triplet"], joint_workdir=str(workdirs["joint"]),
      options=evaluation.EvalOptions(num_batches=2, timing_batches=1))
  assert len(made) == 3  # one jitted function per setting, scored and timed
  settings = results["settings"]
  assert set(settings) == {evaluation.JOINT, evaluation.TRIPLET_PREDICTED,
                           evaluation.TRIPLET_GT}
  assert settings[evaluation.JOINT]["keypoints"] == "joints"
  assert settings[evaluation.TRIPLET_GT]["keypoints"] == "contour"
  assert results["persons"] == 8 and results["step"] == 2
  # The realistic setting runs both networks: their parameters add up.
  params = {k: v["params"] for k, v in settings.items()}
  assert params[evaluation.TRIPLET_GT] > params[evaluation.JOINT] > 0  # 19 input channels
  assert params[evaluation.TRIPLET_PREDICTED] == (params[evaluation.JOINT]
                                                  + params[evaluation.TRIPLET_GT])
  assert all(v["ms_per_image"] > 0 for v in settings.values())
  assert results["timing"]["batch_size"] == 4 and results["timing"]["device"]
  for row in settings.values():  # untrained models: far from the true pose
    assert 0.0 < row["phosphene_nmse"] and row["phosphene_ssim"] < 1.0
  table = results_lib.format_table(results)
  assert "Phosphene-space error" in table and "triplet, ground-truth joints (contour)" in table
  assert "triplet, predicted joints" in table and "Sho." in table and "Neck" in table
  assert "Params" in table and "ms/img" in table and "Mean16" in table
  row = next(line for line in table.splitlines() if line.startswith("joint model"))
  assert row.split()[-2] == results_lib._format_count(params[evaluation.JOINT])


def test_format_count():
  assert [results_lib._format_count(n) for n in (850, 12_345, 850_000, 6_730_000)] == [
      "850", "12.3k", "850k", "6.73M"]
  assert [results_lib._format_ms(v) for v in (0.0412, 8.854, 10.44, 1234.5)] == [
      "0.0412", "8.85", "10.4", "1234"]


def test_combined_setting_runs_one_network(combined_workdir):
  models = inference.PoseModels(combined=workdir_lib.load_model(combined_workdir))
  settings = evaluation.settings_for(models)
  assert list(settings) == [evaluation.COMBINED_JOINTS, evaluation.COMBINED_CONTOUR]
  assert [s.keypoint_set for s in settings.values()] == [kp.JOINTS, kp.CONTOUR]
  assert all(s.models.combined is models.combined for s in settings.values())
  with pytest.raises(ValueError, match="joint_workdir is for a triplet model"):
    evaluation.evaluate_checkpoints(combined_workdir, joint_workdir=str(combined_workdir))


def test_joint_model_is_refused_as_joint_workdir_of_wrong_kind(workdirs):
  with pytest.raises(ValueError, match="expected 'joints'"):
    evaluation.evaluate_checkpoints(workdirs["triplet"],
                                    joint_workdir=str(workdirs["triplet"]))


def test_launch_evaluate_writes_files(workdirs, tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "launch.evaluate", f"--workdir={workdirs['joint']}",
       "--config=configs/tiny.py", "--num_batches=2", "--checkpoint_step=2"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  out = workdirs["joint"] / "eval" / "2"
  metrics = json.loads((out / "metrics.json").read_text())
  assert list(metrics["settings"]) == [evaluation.JOINT]
  assert metrics["settings"][evaluation.JOINT]["persons"] == 8
  assert (out / "pckh_curve.png").read_bytes()[:4] == b"\x89PNG"
  assert "Head" in result.stdout and "joint model" in result.stdout


def test_launch_evaluate_combined_workdir(combined_workdir):
  result = subprocess.run(
      [sys.executable, "-m", "launch.evaluate", f"--workdir={combined_workdir}",
       "--num_batches=2", "--timing_batches=2"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = json.loads((combined_workdir / "eval" / "2" / "metrics.json").read_text())
  assert metrics["target"] == "combined" and metrics["timing"]["timed_batches"] == 2
  settings = metrics["settings"]
  assert list(settings) == [evaluation.COMBINED_JOINTS, evaluation.COMBINED_CONTOUR]
  assert "Neck" in settings[evaluation.COMBINED_CONTOUR]["groups"]
  for row in settings.values():
    assert row["persons"] == 8 and row["step"] == 2
    assert row["params"] > 0 and row["ms_per_image"] > 0
  # One network: one parameter count and one measurement for both rows.
  assert settings[evaluation.COMBINED_JOINTS]["params"] == settings[
      evaluation.COMBINED_CONTOUR]["params"]
  assert settings[evaluation.COMBINED_JOINTS]["ms_per_image"] == settings[
      evaluation.COMBINED_CONTOUR]["ms_per_image"]
  assert "Joints" in result.stdout and "Contour points" in result.stdout
  assert "combined model (joints)" in result.stdout and "combined model (contour)" in result.stdout


def _joint_workdir(workdir, step):
  """A tiny joint model's workdir with one checkpoint at `step` (untrained weights)."""
  config = tiny.get_config("stacks=1")
  config_files.save_config(config, workdir)
  state = train.create_train_state(config, jax.random.key(1)).replace(step=step)
  checkpointer = checkpointing.Checkpointer(workdir)
  checkpointer.save(step, state, {"position": step}, metrics={"eval_loss": 1.0})
  checkpointer.wait_until_finished()
  checkpointer.close()
  return workdir


def test_every_row_names_its_own_model_and_step(workdirs, tmp_path):
  joint = _joint_workdir(tmp_path / "joint", 5)  # the triplet model is at step 2
  results = evaluation.evaluate_checkpoints(
      workdirs["triplet"], joint_workdir=str(joint),
      options=evaluation.EvalOptions(num_batches=1, timing_batches=0, phosphene_error=False))
  rows = results["settings"]
  assert (rows[evaluation.JOINT]["workdir"], rows[evaluation.JOINT]["step"]) == (str(joint), 5)
  for name in (evaluation.TRIPLET_PREDICTED, evaluation.TRIPLET_GT):
    assert (rows[name]["workdir"], rows[name]["step"]) == (str(workdirs["triplet"]), 2)
  assert rows[evaluation.TRIPLET_PREDICTED]["joint_step"] == 5
  assert "joint_step" not in rows[evaluation.TRIPLET_GT]
  assert results["step"] == 2 and results["joint_step"] == 5
  paths = results_lib.write_results(results, tmp_path / "eval")
  metrics = json.loads(paths["metrics"].read_text())
  assert metrics["settings"][evaluation.JOINT]["step"] == 5
  block = metrics["provenance"]
  assert block["models"] == {"joint": {"workdir": str(joint), "step": 5},
                             "triplet": {"workdir": str(workdirs["triplet"]), "step": 2}}
  assert block["dataset"]["tfds_name"] == "fake" and block["dataset"]["examples_used"] == 4
  saved = provenance.read_config(paths["metrics"], block)
  assert saved["models"]["triplet"]["model"]["target"] == "contour"
  assert provenance.config_hash(saved) == block["config"]["sha256"]
  table = paths["table"].read_text()
  assert f"joint model (joints)                    {joint}, step 5" in table
  assert (f"triplet, predicted joints (contour)     {workdirs['triplet']}, step 2; "
          f"joints from {joint}, step 5") in table
  assert f"Model joint: {joint}, step 5" in table and "metrics.config.json" in table


def _compare(a, b):
  return subprocess.run([sys.executable, "-m", "launch.evaluate", "--compare", str(a), str(b)],
                        cwd=REPO, capture_output=True, text=True, timeout=300)


def test_compare_says_what_differs_before_the_pckh(workdirs, tmp_path):
  options = evaluation.EvalOptions(num_batches=1, timing_batches=0, phosphene_error=False)
  first = evaluation.evaluate_checkpoints(workdirs["joint"], options=options)
  results_lib.write_results(first, tmp_path / "a")
  # The same checkpoint over two batches: other options, more examples used.
  second = evaluation.evaluate_checkpoints(
      workdirs["joint"], options=evaluation.EvalOptions(num_batches=2, timing_batches=0,
                                                        phosphene_error=False))
  b = results_lib.write_results(second, tmp_path / "b")["metrics"]
  written = json.loads(b.read_text())  # as if written by other code
  written["provenance"]["code"]["git_commit"] = "f" * 40
  b.write_text(json.dumps(written))

  same = _compare(tmp_path / "a", tmp_path / "a" / "metrics.json")
  assert same.returncode == 0, same.stderr[-3000:]
  assert "Provenance: same data, config and code." in same.stdout
  assert "+0.0" in same.stdout and "differ in" not in same.stdout

  out = _compare(tmp_path / "a", tmp_path / "b")
  assert out.returncode == 0, out.stderr[-3000:]
  lines = out.stdout.splitlines()
  def is_difference(line):
    return line.startswith(("  data: ", "  config: ", "  code: "))
  differ = {line.strip() for line in lines if is_difference(line)}
  commit = first["provenance"]["code"].get("git_commit", "")[:12] or "none"
  assert differ == {"data: examples_used 4 (A) vs 8 (B)",
                    "config: evaluation.num_batches 1 (A) vs 2 (B)",
                    f"code: git_commit {commit} (A) vs ffffffffffff (B)"}
  first_pckh = next(i for i, line in enumerate(lines) if line.startswith("PCKh@0.5"))
  last_differ = max(i for i, line in enumerate(lines) if is_difference(line))
  assert last_differ < first_pckh
  assert f"joint model (joints)  {workdirs['joint']}, step 2" in out.stdout
  rows = [line for line in lines[first_pckh:] if line.split()[:1] in (["joint"], ["B"])]
  assert len(rows) == 3 and rows[0].startswith("joint model") and "B - A" in lines[first_pckh + 6]


def test_compare_refuses_what_is_not_results(tmp_path):
  out = _compare(tmp_path, tmp_path)
  assert out.returncode == 2 and "no results file" in out.stderr.splitlines()[-1]
