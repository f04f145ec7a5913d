"""`launch.demo --scenes` (the 'smoke' size) end to end in-process, and its resumption."""

import json
import math

from absl import logging as absl_logging

from configs import scenes as scenes_config
from triplet_pose import checkpointing
from triplet_pose import scenes_demo
from triplet_pose.data import scene_features as sf
from triplet_pose.prediction import scenes


def _run(workdir):
  return scenes_demo.run_scenes_demo(workdir, scenes_config.get_config("smoke"),
                                     size="smoke", num_panels=2)


def _train_steps(model_dir):
  lines = (model_dir / "metrics.jsonl").read_text().splitlines()
  return [r["step"] for r in map(json.loads, lines) if "train/loss" in r]


def test_scenes_demo_writes_report_and_summary_then_resumes(tmp_path, caplog):
  caplog.set_level("INFO")
  absl_logging.get_absl_logger().propagate = True
  summary = _run(tmp_path)
  model_dir = tmp_path / scenes_demo.MODEL_DIR
  steps = checkpointing.Checkpointer(model_dir, read_only=True).all_steps()
  config = scenes_config.get_config("smoke")
  assert steps and max(steps) == config.num_train_steps

  on_disk = json.loads((tmp_path / scenes_demo.SUMMARY).read_text())
  assert on_disk["model"] == summary["model"] == {"workdir": str(model_dir),
                                                  "step": config.num_train_steps}
  block = on_disk["provenance"]
  assert block["models"]["scenes"]["step"] == config.num_train_steps
  assert block["dataset"]["tfds_name"] == "synthetic_scenes"
  assert block["config"]["file"] == "scenes_summary.config.json"
  assert (tmp_path / block["config"]["file"]).exists()
  ap = on_disk["ap"]
  for key in ("map", "groups", "per_joint", "count_accuracy", "ceiling_map", "by_crowd"):
    assert key in ap
  assert math.isfinite(ap["map"]) and 0.0 <= ap["count_accuracy"] <= 1.0
  assert ap["images"] == 8  # the whole held-out split of the tiny scenes
  assert ap["by_occlusion"] and set(ap["by_occlusion"]) <= set(sf.OCCLUSION_BINS)
  assert on_disk["grouping"]["tuned_on"] == "train"
  assert on_disk["grouping"]["tag_threshold"] in scenes.TAG_THRESHOLDS
  assert on_disk["grouping"]["scales"] == list(config.grouping.scales)
  # What the demo tuned is the model's grouping from now on (launch.predict).
  kept = json.loads((model_dir / scenes.TUNED_FILE).read_text())
  assert kept["step"] == config.num_train_steps
  tuned = {k: on_disk["grouping"][k] for k in scenes.TUNED}
  assert {k: kept[k] for k in scenes.TUNED} == tuned
  assert scenes.tuned_settings(scenes.grouping_options(str(model_dir))) == tuned
  assert on_disk["flip_test"] is True and ap["flip_test"] is True

  report = (tmp_path / scenes_demo.REPORT).read_text()
  assert "Multi-person AP@0.5" in report and "<footer>" in report
  assert "grouping ceiling" in report and "crowd index" in report
  assert "with the flip test" in report
  assert "Input scales" in report
  assert ("multi-scale test" in report) == (len(config.grouping.scales) > 1)
  assert f"too many in {100 * ap['count_too_many']:.1f}%" in report
  for name in ap["by_occlusion"]:
    assert name in report
  assert report.count("data:image/png;base64,") >= 2  # losses, the scene panel
  assert (tmp_path / scenes_demo.PANEL).stat().st_size > 0
  log = caplog.text
  assert "[scenes demo 1/6]" in log and "[scenes demo 6/6]" in log and "ETA" in log

  # A second run finds the model trained: same step and checkpoint, no step repeated.
  checkpoint = model_dir / "checkpoints" / str(config.num_train_steps)
  written = checkpoint.stat().st_mtime_ns
  first_steps = _train_steps(model_dir)
  caplog.clear()
  again = _run(tmp_path)
  assert again["model"]["step"] == config.num_train_steps
  assert json.loads((tmp_path / scenes_demo.SUMMARY).read_text())["model"] == summary["model"]
  n = config.num_train_steps
  assert f"for steps {n + 1}..{n}" in caplog.text  # nothing left to train
  assert checkpoint.stat().st_mtime_ns == written
  assert first_steps and _train_steps(model_dir) == first_steps
