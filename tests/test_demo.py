"""launch.demo end to end (the 'smoke' size) and its resumption."""

import json
import math
import os
import subprocess
import sys

from PIL import Image

from configs import demo as demo_configs
from conftest import REPO
from triplet_pose import checkpointing
from triplet_pose import demo
from triplet_pose import report as report_lib


def _demo(workdir):
  out = subprocess.run([sys.executable, "-m", "launch.demo", f"--workdir={workdir}",
                        "--smoke", "--panels=2"], cwd=REPO, capture_output=True, text=True,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=1200)
  assert out.returncode == 0, out.stderr[-4000:]
  return out


def test_demo_writes_report_and_checkpoints_then_resumes(tmp_path):
  out = _demo(tmp_path)
  log = out.stderr
  assert "[demo 1/6]" in log and "[demo 6/6]" in log and "ETA" in log
  report = (tmp_path / "report.html").read_text()
  assert report.count("data:image/png;base64,") >= 5  # curve, losses, panels
  assert "PCKh@0.5" in report
  summary = json.loads((tmp_path / "summary.json").read_text())
  for setting in ("joint_model", "triplet_predicted_joints", "triplet_ground_truth_joints"):
    assert math.isfinite(summary[setting]["PCKh@0.5"])
    assert 0.0 <= summary[setting]["PCKh@0.5"] <= 1.0
  assert (tmp_path / "eval" / "metrics.json").exists()
  assert len(list((tmp_path / "panels").glob("validation_*.png"))) == 2
  assert (tmp_path / "panels" / "readability.png").exists()
  for model, setting in (("joint", "joint_model"), ("triplet", "triplet_ground_truth_joints")):
    steps = checkpointing.Checkpointer(tmp_path / model, read_only=True).all_steps()
    assert steps and max(steps) == summary[setting]["step"]
    assert summary[setting]["workdir"] == str(tmp_path / model)
  assert summary["provenance"]["dataset"]["tfds_name"] == "synthetic_figures"
  assert (tmp_path / "summary.config.json").exists() and "<footer>" in report

  # A second run finds everything done: no training step is repeated.
  again = _demo(tmp_path)
  assert "resumed from" in again.stderr
  assert "training joints for steps" in again.stderr
  records = [json.loads(l) for l in (tmp_path / "joint" / "metrics.jsonl").read_text().splitlines()]
  train_steps = [r["step"] for r in records if "train/loss" in r]
  assert len(train_steps) == len(set(train_steps))


def test_report_includes_the_readability_results_once_made(tmp_path):
  def section():
    page = report_lib.Report("demo")
    demo._readability_section(page, tmp_path)
    return page.write(tmp_path / "report.html").read_text()
  before = section()  # not run yet: the command that makes it
  assert f"--joint_workdir={tmp_path / 'joint'}" in before and "<img" not in before
  folder = tmp_path / demo.READABILITY_DIR
  folder.mkdir()
  (folder / "table.txt").write_text("Observer PCKh (Mean, %)\nsilhouette  41.7\n")
  Image.new("RGB", (8, 8)).save(folder / "pckh_vs_phosphenes.png")
  after = section()
  assert "silhouette  41.7" in after and after.count("<img") == 1


def test_every_file_names_each_models_own_workdir_and_step(tmp_path):
  # The joint model trains longer than the triplet model: 8 steps against 4.
  joint_config = demo_configs.get_config("joint,smoke")
  joint_config.num_train_steps = 8
  summary = demo.run_demo(tmp_path, joint_config, demo_configs.get_config("triplet,smoke"),
                          size="smoke", num_panels=1)
  joint, triplet = str(tmp_path / "joint"), str(tmp_path / "triplet")
  assert checkpointing.Checkpointer(joint, read_only=True).all_steps() == [4, 8]
  expected = {"joint_model": (joint, 8), "triplet_predicted_joints": (triplet, 4),
              "triplet_ground_truth_joints": (triplet, 4)}
  metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
  written = json.loads((tmp_path / "summary.json").read_text())
  for rows in (metrics["settings"], summary, written):
    for name, (workdir, step) in expected.items():
      assert (rows[name]["workdir"], rows[name]["step"]) == (workdir, step), name
    assert (rows["triplet_predicted_joints"]["joint_workdir"],
            rows["triplet_predicted_joints"]["joint_step"]) == (joint, 8)
  models = {"joint": {"workdir": joint, "step": 8}, "triplet": {"workdir": triplet, "step": 4}}
  assert metrics["provenance"]["models"] == written["provenance"]["models"] == models
  saved = json.loads((tmp_path / written["provenance"]["config"]["file"]).read_text())
  assert saved["joint"]["num_train_steps"] == 8 and saved["size"] == "smoke"
  table = (tmp_path / "eval" / "table.txt").read_text()
  assert f"joint model (joints)                    {joint}, step 8" in table
  assert f"triplet, ground-truth joints (contour)  {triplet}, step 4" in table
  report = (tmp_path / "report.html").read_text()
  assert f"<td>joint model</td><td>joints</td>" in report
  row = report.split("<td>joint model</td>", 1)[1].split("</tr>", 1)[0]
  assert row.endswith(f"<td>{joint}</td><td>8</td>")
  footer = report.split("<footer>", 1)[1]
  assert f"Model joint: {joint}, step 8" in footer and f"Model triplet: {triplet}, step 4" in footer
  assert "Data: synthetic_figures/tiny/" in footer and "summary.config.json" in footer
