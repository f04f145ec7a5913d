"""The readability benchmark's scenes: scoring, images, the grid and its resume.

Known answers first: the ground-truth persons score 100 mAP and the right
count, so do perfect maps through the reader's decoding and grouping (up
to their cells' rounding); the AP bootstrap equals the mean bootstrap
where the statistic is a mean. Then the smoke grid through
`launch.readability --scenes`: every representation x N cell with a
finite mAP, a count accuracy in [0, 1] and occlusion bins, table.txt's
scenes section, and a second run that trains no reader.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from triplet_pose.readability import representations as reps
from triplet_pose.readability import scenes
from triplet_pose.readability import scenes_assemble as assemble
from triplet_pose.readability import scenes_data
from triplet_pose.readability import scenes_images
from triplet_pose.readability import scenes_reader
from triplet_pose.readability import stats


@pytest.fixture(scope="module")
def split():
  config = scenes.scenes_config("smoke")
  config.num_validation = 24
  return scenes_data.make_split(config, "validation")


def test_ground_truth_persons_score_100_and_the_right_count(split):
  truth = scenes_data.true_persons(split)
  report = assemble.report(truth, split)
  assert report["map"] == pytest.approx(100.0)
  assert report["count_accuracy"] == 1.0
  assert set(report["by_occlusion"]) == {"unoccluded", "partly", "heavily"}
  assert all(v == pytest.approx(100.0) for v in report["by_occlusion"].values())
  # Through the runs' JSON and the cell's bootstrap: 100 with a CI of width 0.
  runs = [{"persons": assemble.to_json(truth), "seconds": 1.0} for _ in range(2)]
  cell = assemble.cell(runs, split, samples=20)
  assert cell["map"]["mean"] == pytest.approx(100.0)
  assert cell["map"]["ci95"] == pytest.approx([100.0, 100.0])
  assert cell["count_accuracy"] == {"mean": 1.0, "ci95": [1.0, 1.0], "per_seed": [1.0, 1.0]}
  # One person fewer in every scene: the count is never right, the AP falls.
  fewer = [p[:-1] for p in truth]
  worse = assemble.cell([{"persons": assemble.to_json(fewer)}], split, samples=20)
  assert worse["count_accuracy"]["mean"] == 0.0
  assert worse["map"]["mean"] < 90.0


def test_perfect_maps_are_read_back_by_the_readers_grouping(split):
  found = assemble.perfect_maps(split, heatmap_size=32, sigma=1.0, source_size=256)
  persons = scenes_reader.persons(found, source_size=256,
                                  grouping_options=scenes_reader.options(
                                      scenes_reader.reader_config()))
  report = assemble.report(persons, split)
  # Measured 99.7: joints quantised to a quarter of a 32x32 cell.
  assert report["map"] >= 99.0 and report["count_accuracy"] == 1.0


def test_statistic_summary_of_a_mean_is_the_mean_bootstrap():
  scores = np.random.default_rng(0).uniform(size=(3, 40))
  summary = stats.summary(scores, samples=50, seed=3)
  mean = stats.statistic_summary(lambda s, f: 100 * scores[s, f].mean(), seeds=3, figures=40,
                                 samples=50, seed=3)
  assert mean["mean"] == pytest.approx(summary["mean"])
  assert mean["ci95"] == pytest.approx(summary["ci95"])
  assert mean["per_seed"] == pytest.approx(summary["per_seed"])


def test_scene_masks_show_each_representation(split):
  drawn = {name: scenes_images.draw_uint8(reps.get(name), split, size=64, line_width=1.5)
           for name in ("joints", "triplet", "silhouette", "image_edges")}
  for name, mask in drawn.items():
    assert mask.shape == (24, 64, 64) and mask.dtype == np.uint8, name
    assert mask.reshape(24, -1).max(axis=1).min() > 0, name  # every scene shows someone
  # The silhouette is the visible bodies: no pixel outside them is lit.
  np.testing.assert_array_equal(drawn["silhouette"], split["bodies"])
  assert np.abs(drawn["joints"].astype(int) - drawn["triplet"]).max() > 100


def test_learned_cannot_show_scenes():
  with pytest.raises(ValueError, match="'learned' cannot show scenes"):
    scenes_images.check(["joints", "learned"])


def _launch(workdir, *extra):
  return subprocess.run(
      [sys.executable, "-m", "launch.readability", "--scenes", f"--workdir={workdir}",
       "--config=configs/readability.py:size=smoke,scenes=True", *extra],
      capture_output=True, text=True, timeout=900, check=False)


@pytest.mark.slow
def test_launch_scenes_smoke_grid_writes_cells_and_resumes(tmp_path):
  out = _launch(tmp_path)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "ETA" in out.stderr and "reader step 2: loss" in out.stderr
  results = json.loads((tmp_path / "scenes_results.json").read_text())
  config = scenes.scenes_config("smoke")
  cells = results["cells"]
  assert {(c["representation"], c["num_phosphenes"]) for c in cells} == {
      (r, n) for r in config.representations for n in config.num_phosphenes}
  for cell in cells:
    lo, hi = cell["map"]["ci95"]
    assert np.isfinite(cell["map"]["mean"]) and 0.0 <= lo <= cell["map"]["mean"] <= hi <= 100
    assert len(cell["map"]["per_seed"]) == len(config.seeds)
    assert 0.0 <= cell["count_accuracy"]["mean"] <= 1.0
    assert set(cell["by_occlusion"]) <= {"unoccluded", "partly", "heavily"}
    assert cell["by_occlusion"] and sum(cell["persons_by_occlusion"].values()) == cell["persons"]
    assert cell["budget"]["active_electrodes"] > 0 and cell["seconds"] > 0
  assert results["ceiling"]["heatmap_size"] == config.observer.image_size // 4
  block = results["provenance"]
  assert block["dataset"]["examples"] == config.num_validation
  assert (tmp_path / block["config"]["file"]).is_file()
  table = (tmp_path / "table.txt").read_text()
  assert "Scenes: several people" in table and "Person count right" in table
  assert "Code: triplet_pose" in table
  # A second run resumes: no run is redone (none on the progress bar), no
  # reader is trained again, the cells are the same.
  runs = (tmp_path / "scenes_runs.json").read_text()
  again = _launch(tmp_path)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "ETA" not in again.stderr and "reader step" not in again.stderr
  assert (tmp_path / "scenes_runs.json").read_text() == runs
  resumed = json.loads((tmp_path / "scenes_results.json").read_text())
  assert [c["map"] for c in resumed["cells"]] == [c["map"] for c in cells]
  assert resumed["provenance_earlier"] == [block]
  # Another config in the same workdir is refused in one line.
  other = _launch(tmp_path, "--config.observer.steps=3")
  assert other.returncode == 2 and "another config" in other.stderr
  assert "Traceback" not in other.stderr
