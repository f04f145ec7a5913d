"""The provenance block: its fields, git state, the config beside, differences."""

import json
import os
import subprocess
import sys

import ml_collections
import pytest

from conftest import REPO
from triplet_pose import provenance


def _git(cwd, *args):
  subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True,
                 env=dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
                          GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t"))


def test_block_has_every_field():
  config = ml_collections.ConfigDict({"model": {"num_stacks": 2}, "seed": 0})
  dataset = {"tfds_name": "synthetic_figures", "config": "tiny", "version": "1.0.0",
             "split": "validation", "examples": 16}
  block = provenance.provenance(config=config, models={"joint": {"workdir": "/w/j", "step": 7}},
                                dataset=dataset)
  assert set(block) == {"code", "config", "models", "dataset", "machine", "versions",
                        "time_utc", "command"}
  assert block["code"]["version"] and block["code"]["package"] == "triplet_pose"
  assert block["models"] == {"joint": {"workdir": "/w/j", "step": 7}}
  assert block["dataset"] == dataset
  assert block["machine"]["cpu"] and block["machine"]["cpu_cores"] >= 1
  assert {"python", "jax", "flax"} <= set(block["versions"])
  assert block["time_utc"].endswith("Z") and block["command"]
  json.dumps(block)  # JSON-able
  head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                        text=True, check=False).stdout.strip()
  if head:  # the tests run in a checkout: its commit
    assert block["code"]["git_commit"] == head
    assert isinstance(block["code"]["git_dirty"], bool)


def test_git_state_clean_dirty_and_absent(tmp_path, monkeypatch):
  package = tmp_path / "repo" / "triplet_pose"
  package.mkdir(parents=True)
  (package / "__init__.py").write_text("x = 1\n")
  monkeypatch.setattr(provenance, "_SOURCE_DIR", package)
  assert "git_commit" not in provenance.code_state()  # not a checkout (a wheel)
  _git(package.parent, "init", "-q")
  _git(package.parent, "add", ".")
  _git(package.parent, "commit", "-q", "-m", "one")
  clean = provenance.code_state()
  assert len(clean["git_commit"]) == 40 and clean["git_dirty"] is False
  assert "git_diff_sha256" not in clean
  (package / "__init__.py").write_text("x = 2\n")
  first = provenance.code_state()
  assert first["git_dirty"] is True and first["git_commit"] == clean["git_commit"]
  (package / "__init__.py").write_text("x = 3\n")
  assert provenance.code_state()["git_diff_sha256"] != first["git_diff_sha256"]
  # A package inside someone else's checkout, but not tracked by it: no commit.
  other = tmp_path / "other"
  (other / "site-packages" / "triplet_pose").mkdir(parents=True)
  (other / "README").write_text("x")
  _git(other, "init", "-q")
  _git(other, "add", "README")
  _git(other, "commit", "-q", "-m", "one")
  (other / "site-packages" / "triplet_pose" / "__init__.py").write_text("x = 1\n")
  monkeypatch.setattr(provenance, "_SOURCE_DIR", other / "site-packages" / "triplet_pose")
  assert "git_commit" not in provenance.code_state()


def test_no_heavy_imports():
  code = ("import sys; from triplet_pose import provenance; b = provenance.provenance("
          "config={'a': 1}); assert b['versions']['python']; "
          "heavy = [m for m in ('torch', 'tensorflow', 'jax', 'dynaphos') if m in sys.modules]; "
          "assert not heavy, heavy; print(b['versions'].get('torch', 'no torch'))")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       timeout=120, check=False)
  assert out.returncode == 0, out.stderr[-2000:]


def test_config_hash_is_stable_and_saved_beside(tmp_path):
  a = ml_collections.ConfigDict({"b": 1, "a": {"y": [1, 2], "x": "s"}})
  b = ml_collections.ConfigDict({"a": {"x": "s", "y": [1, 2]}, "b": 1})
  assert provenance.config_hash(a) == provenance.config_hash(b)
  b.b = 2
  assert provenance.config_hash(a) != provenance.config_hash(b)
  results = {"value": 1.0, "provenance": provenance.provenance(config={"eval": a})}
  path = provenance.write_json(tmp_path / "metrics.json", results)
  written = json.loads(path.read_text())
  assert written["provenance"]["config"]["file"] == "metrics.config.json"
  saved = provenance.read_config(path, written["provenance"])
  assert saved == {"eval": a.to_dict()}
  assert provenance.config_hash(saved) == written["provenance"]["config"]["sha256"]


def test_dataset_info_of_the_fake_input():
  from configs import tiny  # pylint: disable=g-import-not-at-top
  info = provenance.dataset_info(tiny.get_config().input, "validation", examples=8)
  assert info == {"tfds_name": "fake", "config": None, "version": None,
                  "split": "validation", "examples": 32, "examples_used": 8}


def _block(**changes):
  block = {"code": {"package": "triplet_pose", "version": "0.1.0", "git_commit": "a" * 40,
                    "git_dirty": False},
           "config": {"sha256": "1" * 64, "file": None},
           "dataset": {"tfds_name": "synthetic_figures", "config": "tiny", "version": "1.0.0",
                       "split": "validation", "examples": 16},
           "machine": {"cpu": "x"}, "versions": {"python": "3.11", "jax": "0.10.2"}}
  for key, value in changes.items():
    section, field = key.split("__")
    block[section] = {**block[section], field: value}
  return block


def test_differences_one_line_each():
  same = _block()
  assert provenance.differences(same, _block(machine__cpu="y")) == []  # not data/config/code
  lines = provenance.differences(
      same, _block(dataset__version="1.1.0", dataset__examples=20, config__sha256="2" * 64,
                   code__git_commit="b" * 40, versions__jax="0.11.0"))
  assert lines == ["data: version '1.0.0' (A) vs '1.1.0' (B)",
                   "data: examples 16 (A) vs 20 (B)",
                   "config: sha256 1111111111111111 (A) vs 2222222222222222 (B)",
                   "code: git_commit aaaaaaaaaaaa (A) vs bbbbbbbbbbbb (B)",
                   "code: jax '0.10.2' (A) vs '0.11.0' (B)"]
  # With the saved configs, the keys that differ.
  lines = provenance.differences(same, _block(config__sha256="2" * 64),
                                 configs=({"input": {"name": "a", "size": 1}},
                                          {"input": {"name": "b", "size": 1}, "seed": 3}))
  assert lines == ["config: input.name 'a' (A) vs 'b' (B)", "config: seed none (A) vs 3 (B)"]
  assert "not recorded in A" in provenance.differences(None, same)[0]


def test_format_lines_name_everything():
  block = _block()
  block["models"] = {"joint": {"workdir": "/w/joint", "step": 2300}}
  text = "\n".join(provenance.format_lines(block))
  for part in ("git aaaaaaaaaaaa", "sha256 1111111111111111", "/w/joint, step 2300",
               "synthetic_figures/tiny/1.0.0, split validation, 16 examples", "jax 0.10.2"):
    assert part in text, part
  assert provenance.format_lines(None) == ["Provenance: not recorded."]


def test_format_lines_name_data_drawn_in_process():
  block = _block()
  block["dataset"] = {"tfds_name": None, "config": None, "version": None,
                      "source": "figures drawn in process", "split": "validation",
                      "examples": 100}
  text = "\n".join(provenance.format_lines(block))
  assert "Data: figures drawn in process, split validation, 100 examples" in text


def test_cpu_model_reads_cpuinfo():
  if not os.path.exists("/proc/cpuinfo"):
    pytest.skip("no /proc/cpuinfo")
  with open("/proc/cpuinfo", encoding="utf-8") as f:
    names = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
  if names:
    assert provenance.cpu_model() == names[0]


def test_every_training_start_appends_its_block(tmp_path):
  from triplet_pose import metric_writer  # pylint: disable=g-import-not-at-top  (TensorFlow)
  for _ in range(2):  # a run and its resumption
    metric_writer.MetricWriter(tmp_path).close()
  lines = (tmp_path / metric_writer.PROVENANCE_FILE).read_text().splitlines()
  blocks = [json.loads(line)["provenance"] for line in lines]
  assert len(blocks) == 2 and all(b["code"]["version"] and b["command"] for b in blocks)
