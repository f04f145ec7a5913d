"""benchmarks/report.py: docs/performance.md's tables from the benchmarks' JSON."""

from __future__ import annotations

import json
import pathlib
import sys

import pytest

_REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_REPO / "benchmarks"))
import common  # pylint: disable=g-import-not-at-top,wrong-import-position
import report  # pylint: disable=g-import-not-at-top,wrong-import-position

_PAGE = """# Performance

Text before.

<!-- report:conv_grads -->
stale table
<!-- /report:conv_grads -->

Between.

<!-- report:video -->
<!-- /report:video -->

Text after.
"""


def _results(folder: pathlib.Path, monkeypatch, name: str, ratio: str) -> pathlib.Path:
  """A results file as `python benchmarks/<name>.py --json=...` writes it."""
  monkeypatch.setattr(sys, "orig_argv",
                      ["/venv/bin/python3", f"benchmarks/{name}.py", "--model=demo", "--json=x"])
  return common.write_json(folder / f"{name}.json", {
      "table": common.table(["part", "ours / PyTorch"], [["dW", ratio], ["dx", "1.10x"]],
                            title="the convolutions", note="above 1x ours is slower")},
                           config={"model": "demo"})


def test_report_writes_each_table_under_its_command_machine_and_date(tmp_path, monkeypatch):
  folder = tmp_path / "results"
  _results(folder, monkeypatch, "conv_grads", "1.04x")
  page = tmp_path / "performance.md"
  page.write_text(_PAGE)
  assert report.main([f"--results={folder}", f"--output={page}"]) == 0
  text = page.read_text()
  assert "stale table" not in text
  assert text.startswith("# Performance\n\nText before.") and text.endswith("Text after.\n")
  assert "Between." in text
  section = text.split("<!-- report:conv_grads -->")[1].split("<!-- /report:conv_grads -->")[0]
  assert "`python benchmarks/conv_grads.py --model=demo --json=x`" in section
  assert common.cpu_model() in section
  prov = json.loads((folder / "conv_grads.json").read_text())["provenance"]
  assert prov["time_utc"][:10] in section
  assert "| part | ours / PyTorch |" in section and "| dW | 1.04x |" in section
  assert "(above 1x ours is slower)" in section
  # A benchmark with a section and no results says how to make them.
  assert "no results yet: run `python benchmarks/video.py" in text
  # Rewriting from the same results changes nothing; --check agrees.
  assert report.main([f"--results={folder}", f"--output={page}", "--check"]) == 0


def test_check_fails_when_a_table_is_older_than_its_results(tmp_path, monkeypatch):
  folder = tmp_path / "results"
  _results(folder, monkeypatch, "conv_grads", "1.04x")
  page = tmp_path / "performance.md"
  page.write_text(_PAGE)
  report.main([f"--results={folder}", f"--output={page}"])
  _results(folder, monkeypatch, "conv_grads", "0.98x")  # a new run
  assert report.main([f"--results={folder}", f"--output={page}", "--check"]) == 1
  assert "| dW | 1.04x |" in page.read_text()  # --check writes nothing


def test_a_file_that_is_not_a_benchmarks_results_is_named(tmp_path, capsys):
  folder = tmp_path / "results"
  folder.mkdir()
  (folder / "notes.json").write_text(json.dumps({"rows": []}))
  page = tmp_path / "performance.md"
  page.write_text(_PAGE)
  assert report.main([f"--results={folder}", f"--output={page}"]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "notes.json" in err and "--json" in err
  assert page.read_text() == _PAGE


def test_table_rejects_rows_of_the_wrong_width():
  with pytest.raises(ValueError, match="2 cells"):
    common.table(["a", "b"], [[1, 2], [3]])


def test_docs_performance_page_matches_its_results():
  """docs/performance.md holds exactly the tables of docs/results/."""
  assert report.main([f"--results={_REPO / 'docs' / 'results'}",
                      f"--output={_REPO / 'docs' / 'performance.md'}", "--check"]) == 0
