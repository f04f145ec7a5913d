"""launch.demo end to end (the 'smoke' size) and its resumption."""

import json
import math
import os
import subprocess
import sys

from PIL import Image

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
  for model in ("joint", "triplet"):
    steps = checkpointing.Checkpointer(tmp_path / model, read_only=True).all_steps()
    assert steps and max(steps) == summary["joint_model"]["step"]

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
