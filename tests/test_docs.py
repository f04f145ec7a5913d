"""The commands in README.md and docs/*.md run as written.

Every shell block of the docs is parsed into commands. For each
`python -m launch.X ...` the flags are parsed by launch.X's own flag
definitions (in a fresh process per module, as the entry point would parse
them): an unknown `--flag`, a `--config.a.b` that is not a field of the
config the command names, a config argument the config rejects, or a value
of the wrong type fails the test. For each `python benchmarks/X.py ...` every
`--flag` must be one that the benchmark's `--help` lists. Every
`configs/*.py` and `benchmarks/*.py` the docs name must exist.
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_SHELL_LANGS = {"bash", "sh", "shell", "console"}
_SEPARATORS = {";", "&&", "||", "|", "&", ";;", "(", ")"}
# Words that may precede the program of a command.
_PREFIXES = {"do", "then", "else", "time", "exec", "env", "!", "{", "}"}
_PREFIX_WITH_ARGS = {"/usr/bin/time": {"-v", "-p"}, "nice": {"-n"}}


def shell_blocks(text: str) -> list[str]:
  """The bodies of the fenced shell code blocks of a markdown text."""
  blocks, lines, inside = [], [], False
  for line in text.splitlines():
    fence = re.match(r"^\s*```\s*(\S*)", line)
    if fence and not inside:
      inside, lines = True, []
      lang = fence.group(1).lower()
      keep = lang in _SHELL_LANGS
    elif fence and inside:
      inside = False
      if keep:
        blocks.append("\n".join(lines))
    elif inside:
      lines.append(line)
  return blocks


def _line_commands(line: str) -> list[list[str]]:
  """Simple commands of one shell line, as word lists (comments dropped)."""
  lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()")
  lexer.whitespace_split = True
  lexer.commenters = "#"
  out, current = [], []
  for token in lexer:
    if token in _SEPARATORS:
      out.append(current)
      current = []
    else:
      current.append(token)
  out.append(current)
  return [c for c in out if c]


def _split_lines(block: str) -> list[list[str]]:
  """Simple commands of a shell block: lines joined at a trailing backslash."""
  result = []
  for line in block.replace("\\\n", " ").splitlines():
    result.extend(_line_commands(line))
  return result


def _program(words: list[str]) -> tuple[str, str, list[str]] | None:
  """('module', 'launch.x', args) or ('script', 'benchmarks/x.py', args) or None."""
  i = 0
  while i < len(words):
    word = words[i]
    if word in _PREFIXES or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", word):
      i += 1
    elif word in _PREFIX_WITH_ARGS:
      i += 1
      takes = _PREFIX_WITH_ARGS[word]
      while i < len(words) and words[i].startswith("-"):
        i += 2 if (word == "nice" and words[i] in takes) else 1
    elif word == "srun":  # srun's own options, then the program
      i += 1
      while i < len(words) and words[i].startswith("-"):
        i += 1
    else:
      break
  rest = words[i:]
  if len(rest) >= 3 and rest[0] in ("python", "python3") and rest[1] == "-m":
    return "module", rest[2], rest[3:]
  if len(rest) >= 2 and rest[0] in ("python", "python3") and rest[1].endswith(".py"):
    return "script", rest[1], rest[2:]
  return None


def documented_commands() -> dict[tuple[str, str], list[tuple[str, list[str]]]]:
  """{(kind, program): [(where, args), ...]} over every shell block of the docs."""
  found = collections.defaultdict(list)
  for path in DOCS:
    for block in shell_blocks(path.read_text()):
      for words in _split_lines(block):
        program = _program(words)
        if program:
          kind, name, args = program
          found[(kind, name)].append((f"{path.relative_to(REPO)}: {' '.join(words)}", args))
  return found


def test_docs_name_only_existing_configs_and_benchmarks():
  missing = []
  for path in DOCS:
    for name in sorted(set(re.findall(r"\b((?:configs|benchmarks)/\w+\.py)", path.read_text()))):
      if not (REPO / name).is_file():
        missing.append(f"{path.relative_to(REPO)} names {name}, which does not exist")
  assert not missing, "\n".join(missing)


def test_docs_have_launch_and_benchmark_commands():
  """The parser finds the commands (a parser that finds none checks nothing)."""
  found = documented_commands()
  modules = {name for kind, name in found if kind == "module" and name.startswith("launch.")}
  assert {"launch.train", "launch.evaluate", "launch.demo", "launch.readability"} <= modules
  assert any(kind == "script" and name.startswith("benchmarks/") for kind, name in found)


# Runs in a fresh process per launch module: parses each documented argument
# list with the module's flags, as `common.run` would before `main`.
_CHECK_FLAGS = r"""
import importlib, json, sys
from absl import flags
module, cases = sys.argv[1], json.load(sys.stdin)
importlib.import_module(module)
FLAGS = flags.FLAGS
# Parsing --config registers one flag per override; drop them between cases.
defined = set(FLAGS)
errors = []
for where, args in cases:
  argv = [module]
  for arg in args:
    name = arg[2:].split("=", 1)[0] if arg.startswith("--") else None
    if name is not None and "$" in arg:
      # A shell variable: only the flag's name can be checked.
      if name.split(".", 1)[0] not in FLAGS and name.removeprefix("no") not in FLAGS:
        errors.append(f"{where}: unknown flag --{name}")
      continue
    argv.append(arg)
  for name in set(FLAGS) - defined:
    delattr(FLAGS, name)
  FLAGS.unparse_flags()
  sys.argv = argv  # config_flags reads the overrides from sys.argv
  try:
    FLAGS(argv)
  except BaseException as e:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [""]
    message = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    if "must have a value other than None" not in message:
      errors.append(f"{where}: {type(e).__name__}: {message}")
print(json.dumps(errors))
"""


def _check_launch_modules(found) -> list[str]:
  procs = {}
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  for (kind, name), cases in found.items():
    if kind != "module" or not name.startswith("launch."):
      continue
    if not (REPO / (name.replace(".", "/") + ".py")).is_file():
      procs[name] = None
      continue
    proc = subprocess.Popen([sys.executable, "-c", _CHECK_FLAGS, name], cwd=REPO, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    procs[name] = (proc, json.dumps(cases))
  errors = []
  for name, entry in procs.items():
    if entry is None:
      errors.append(f"the docs run {name}, which does not exist")
      continue
    proc, cases = entry
    out, err = proc.communicate(cases, timeout=600)
    if proc.returncode != 0:
      errors.append(f"{name}: the flag check failed: {err.strip().splitlines()[-1:]}")
      continue
    errors.extend(json.loads(out.strip().splitlines()[-1]))
  return errors


def _benchmark_flags(script: str) -> set[str]:
  out = subprocess.run([sys.executable, script, "--help"], cwd=REPO, capture_output=True,
                       text=True, timeout=300, check=True,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"))
  return set(re.findall(r"(?<![\w-])--([A-Za-z0-9_][\w-]*)", out.stdout))


def _check_benchmarks(found) -> list[str]:
  errors = []
  for (kind, name), cases in found.items():
    if kind != "script" or not name.startswith("benchmarks/"):
      continue
    if not (REPO / name).is_file():
      errors.append(f"the docs run {name}, which does not exist")
      continue
    defined = _benchmark_flags(name)
    for where, args in cases:
      for arg in args:
        if arg.startswith("--"):
          flag = arg[2:].split("=", 1)[0]
          if flag not in defined:
            errors.append(f"{where}: {name} defines no --{flag}")
  return errors


def test_documented_flags_exist():
  found = documented_commands()
  errors = _check_launch_modules(found) + _check_benchmarks(found)
  assert not errors, "flags in the docs that the code does not define:\n" + "\n".join(errors)


def test_flag_check_catches_a_renamed_flag():
  """The checker itself: a flag the module does not define is reported."""
  cases = {("module", "launch.train"): [
      ("doc", ["--config=configs/tiny.py", "--workdir=/tmp/x", "--work_dir=/tmp/x"]),
      ("doc", ["--config=configs/tiny.py", "--workdir=/tmp/x", "--config.num_train_steps=3"]),
      ("doc", ["--config=configs/tiny.py", "--workdir=/tmp/x", "--config.no_such_field=3"]),
  ]}
  errors = _check_launch_modules(cases)
  assert len(errors) == 2, errors
  assert "work_dir" in errors[0] and "no_such_field" in errors[1], errors


@pytest.mark.parametrize("block, expected", [
    ("python -m launch.train --config=configs/x.py \\\n    --workdir=/tmp/a  # train\n",
     [["python", "-m", "launch.train", "--config=configs/x.py", "--workdir=/tmp/a"]]),
    ("for i in 0 1; do\n  python -m launch.train --process_id=$i &\ndone; wait",
     [["for", "i", "in", "0", "1"], ["do"], ["python", "-m", "launch.train", "--process_id=$i"],
      ["done"], ["wait"]]),
    ("pip install -e '.[test]' && python -m launch.demo --workdir=/tmp/d",
     [["pip", "install", "-e", ".[test]"], ["python", "-m", "launch.demo", "--workdir=/tmp/d"]]),
])
def test_command_parser(block, expected):
  assert _split_lines(block) == expected


def test_program_skips_prefixes():
  words = shlex.split("/usr/bin/time -v nice -n 5 X=1 python -m launch.demo --quick")
  assert _program(words) == ("module", "launch.demo", ["--quick"])
  assert _program(shlex.split("srun --nodes=2 python -m launch.train --distributed")) == (
      "module", "launch.train", ["--distributed"])
  assert _program(shlex.split("python benchmarks/gpu.py --quick")) == (
      "script", "benchmarks/gpu.py", ["--quick"])
