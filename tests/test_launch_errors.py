"""Every entry point turns expected errors into one line on stderr and exit status 2."""

import errno
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO
from launch import common

_ENV = dict(os.environ, JAX_PLATFORMS="cpu")
_ENV.pop(common.TRACEBACK_ENV, None)


def _run(module, *args, env=None):
  out = subprocess.run([sys.executable, "-m", f"launch.{module}", *map(str, args)],
                       cwd=REPO, env=env or _ENV, capture_output=True, text=True,
                       timeout=600)
  return out.returncode, out.stderr


def _error_line(module, stderr):
  """The one `launch.<module>: error:` line; no traceback before it."""
  assert "Traceback" not in stderr, stderr[-3000:]
  lines = [l for l in stderr.splitlines() if l.startswith(f"launch.{module}: error: ")]
  assert len(lines) == 1, stderr[-3000:]
  return lines[0]


def test_unknown_config_field_is_one_line(tmp_path):
  code, stderr = _run("train", "--config=configs/tiny.py", f"--workdir={tmp_path}",
                      "--config.optimizer.nope=1")
  assert code == 2
  line = _error_line("train", stderr)
  assert "--config.optimizer.nope" in line and "'nope'" in line


def test_invalid_config_argument_and_flag_value(tmp_path):
  code, stderr = _run("train", "--config=configs/tiny.py:bogus=1", f"--workdir={tmp_path}")
  assert code == 2 and "bogus" in _error_line("train", stderr)
  code, stderr = _run("train", "--config=configs/tiny.py", f"--workdir={tmp_path}",
                      "--config.num_train_steps=abc")
  assert code == 2 and "num_train_steps" in _error_line("train", stderr)


def test_not_a_workdir_names_the_file(tmp_path):
  code, stderr = _run("evaluate", f"--workdir={tmp_path}")
  assert code == 2
  assert str(tmp_path / "config.json") in _error_line("evaluate", stderr)


def test_traceback_on_request(tmp_path):
  code, stderr = _run("evaluate", f"--workdir={tmp_path}", "--verbosity=1")
  assert code == 2 and "Traceback" in stderr and "launch.evaluate: error: " in stderr
  code, stderr = _run("evaluate", f"--workdir={tmp_path}",
                      env=dict(_ENV, **{common.TRACEBACK_ENV: "1"}))
  assert code == 2 and "Traceback" in stderr


def test_wrong_workdir_kind(workdirs, tmp_path):
  code, stderr = _run("predict", f"--joint_workdir={workdirs['triplet']}",
                      f"--input={tmp_path}", f"--output={tmp_path / 'out'}")
  assert code == 2
  line = _error_line("predict", stderr)
  assert str(workdirs["triplet"]) in line and "contour" in line


def test_missing_input_files(tmp_path):
  code, stderr = _run("phosphenes", f"--input={tmp_path / 'nope.png'}",
                      f"--output={tmp_path / 'out.png'}")
  assert code == 2 and "nope.png" in _error_line("phosphenes", stderr)
  code, stderr = _run("import_torch", f"--checkpoint={tmp_path / 'nope.pth'}",
                      f"--workdir={tmp_path / 'w'}")
  assert code == 2 and "nope.pth" in _error_line("import_torch", stderr)


def test_predict_on_a_full_disk_names_the_directory(workdirs, small_tmpfs):
  out = small_tmpfs("1m") / "out"
  code, stderr = _run("predict", f"--joint_workdir={workdirs['joint']}",
                      f"--input={REPO / 'README.md'}", f"--output={out}")
  assert code == 2
  line = _error_line("predict", stderr)
  assert f"in {out}: needs about" in line


def test_disk_full_while_writing_names_the_directory(tmp_path):
  (tmp_path / "a.json").write_text("{}")
  with pytest.raises(OSError) as e:
    with common.disk_full_names(tmp_path, what="predictions"):
      raise OSError(errno.ENOSPC, "No space left on device")
  assert f"writing predictions in {tmp_path}" in str(e.value)
  assert "1 file(s) written there before" in str(e.value)


_SCRIPT = """
import sys
sys.path.insert(0, {repo!r})
from launch import common

def main(argv):
  raise {error}

common.run(main, uses_tensorflow=False)
"""


@pytest.mark.parametrize("error, expected", [
    ("ValueError('bad value in x.yaml')", 2),
    ("FileNotFoundError(2, 'No such file or directory', '/no/such')", 2),
    ("RuntimeError('a bug')", 1),
    ("ImportError('no module named foo')", 1),
])
def test_expected_errors_are_one_line_others_keep_their_traceback(tmp_path, error, expected):
  script = tmp_path / "entry.py"
  script.write_text(textwrap.dedent(_SCRIPT.format(repo=str(REPO), error=error)))
  out = subprocess.run([sys.executable, str(script)], env=_ENV, capture_output=True,
                       text=True, timeout=120)
  assert out.returncode == expected, out.stderr
  if expected == 2:
    line = _error_line("entry", out.stderr)
    assert ("x.yaml" in line) or ("/no/such" in line)
  else:
    assert "Traceback" in out.stderr and "launch.entry: error" not in out.stderr


def test_format_message_keeps_instructions_below_the_line():
  head, details = common.format_message(ValueError("a is\n  missing\n\nput it in b/"))
  assert head == "a is missing" and details == "put it in b/"
  assert pathlib.Path(sys.argv[0]).stem in common.program_name()


def test_scenes_grouping_flags_and_tuning_are_one_or_the_other(tmp_path):
  code, stderr = _run("scenes", f"--workdir={tmp_path}", f"--output={tmp_path / 'out'}",
                      "--tune_grouping", "--tag_threshold=2")
  assert code == 2
  line = _error_line("scenes", stderr)
  assert "--tune_grouping" in line and "--tag_threshold" in line
  assert not (tmp_path / "out").exists()


def test_scenes_scales_must_be_numbers(tmp_path):
  code, stderr = _run("scenes", f"--workdir={tmp_path}", f"--output={tmp_path / 'out'}",
                      "--scales=1,x1.25")
  assert code == 2
  assert "--scales takes numbers" in _error_line("scenes", stderr)
  assert not (tmp_path / "out").exists()
