r"""Writes docs/performance.md's tables from the benchmarks' JSON results.

  python benchmarks/report.py --results=docs/results --output=docs/performance.md
  python benchmarks/report.py --results=docs/results --check   # stale tables: exit 1

Every benchmark run with `--json=FILE` writes its headline `table`
(`common.table`) and its `provenance` block (command line, machine, time).
The page holds a pair of markers per benchmark,

  <!-- report:train_step -->
  <!-- /report:train_step -->

and this script replaces what lies between them with the table of every
results file of that benchmark (named by the script its command ran),
each under the command, the machine and the date that produced it. The
text around the markers is left as written.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import shlex
import sys
from typing import Any

import common  # pylint: disable=unused-import  # puts the repository on sys.path

from triplet_pose import storage  # pylint: disable=g-import-not-at-top

_MARKERS = re.compile(r"(<!-- report:(\w+) -->\n)(.*?)(<!-- /report:\2 -->)", re.S)


def load_results(folder: pathlib.Path) -> dict[str, list[dict[str, Any]]]:
  """{benchmark name: [results, ...]} of the folder's JSON files, by file name.

  Raises:
    ValueError: a file that is not a benchmark's results (no `table` or no
      `provenance` with its command), naming the file.
  """
  found: dict[str, list[dict[str, Any]]] = {}
  for path in sorted(folder.glob("*.json")):
    if path.name.endswith(".config.json"):
      continue  # the arguments saved beside a results file
    try:
      result = json.loads(path.read_text())
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}: not JSON ({e})") from None
    command = result.get("provenance", {}).get("command")
    if "table" not in result or not command:
      raise ValueError(f"{path}: not a benchmark's results (needs 'table' and "
                       "'provenance.command'; rerun the benchmark with --json)")
    script = next((w for w in command if w.endswith(".py")), command[0])
    found.setdefault(pathlib.Path(script).stem, []).append(result)
  return found


def _cell(value: Any) -> str:
  return str(value).replace("|", "\\|").replace("\n", " ")


def render(result: dict[str, Any]) -> str:
  """One results file as markdown: where it came from, then its table."""
  prov, table = result["provenance"], result["table"]
  machine = prov.get("machine", {})
  where = machine.get("cpu") or "unknown CPU"
  if machine.get("cpu_cores"):
    where = f"{machine['cpu_cores']} cores of an {where}"
  if machine.get("device") and "cpu" not in str(machine["device"]).lower():
    where = f"{machine['device']} ({where})"
  words = list(prov["command"])
  if pathlib.Path(words[0]).name.startswith("python"):
    words[0] = "python"  # not the interpreter's path on the machine that ran it
  elif words[0].endswith(".py"):
    words.insert(0, "python")
  command = " ".join(shlex.quote(w) for w in words)
  code = prov.get("code", {})
  commit = code.get("git_commit", "")[:10]
  commit = f", commit {commit}{' (modified)' if code.get('git_dirty') else ''}" if commit else ""
  lines = [f"{table.get('title') or 'results'}: `{command}` on {where}, "
           f"{prov.get('time_utc', '?')[:10]}{commit}:", "",
           "| " + " | ".join(_cell(c) for c in table["columns"]) + " |",
           "|" + " --- |" * len(table["columns"])]
  lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table["rows"]]
  if table.get("note"):
    lines += ["", f"({table['note']})"]
  return "\n".join(lines) + "\n"


def update(page: str, results: dict[str, list[dict[str, Any]]]) -> tuple[str, list[str]]:
  """The page with every marked section rewritten; and the benchmarks with no results."""
  missing = []

  def replace(match: re.Match) -> str:
    name = match.group(2)
    if name not in results:
      missing.append(name)
      body = f"(no results yet: run `python benchmarks/{name}.py --json=...`)\n"
    else:
      body = "\n".join(render(r) for r in results[name])
    return f"{match.group(1)}{body}{match.group(4)}"

  return _MARKERS.sub(replace, page), missing


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  p.add_argument("--results", default="docs/results", help="folder of the benchmarks' JSON")
  p.add_argument("--output", default="docs/performance.md", help="the page to update")
  p.add_argument("--check", action="store_true",
                 help="write nothing; exit 1 when the page differs from its results")
  args = p.parse_args(argv)
  output, folder = pathlib.Path(args.output), pathlib.Path(args.results)
  if not folder.is_dir():
    print(f"report.py: error: no results folder {folder}", file=sys.stderr)
    return 2
  try:
    page = output.read_text()
    results = load_results(folder)
  except (OSError, ValueError) as e:
    print(f"report.py: error: {e}", file=sys.stderr)
    return 2
  new, missing = update(page, results)
  unused = sorted(set(results) - set(m.group(2) for m in _MARKERS.finditer(page)))
  for name in unused:
    print(f"report.py: {name}: results but no <!-- report:{name} --> section in {output}")
  for name in missing:
    print(f"report.py: {name}: no results in {folder}")
  if args.check:
    if new != page:
      print(f"report.py: {output} is out of date: run without --check")
      return 1
    return 0
  storage.write_text(output, new)
  print(f"wrote {output}: {sum(len(v) for v in results.values())} results files")
  return 0


if __name__ == "__main__":
  sys.exit(main())
