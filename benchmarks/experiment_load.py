r"""Latency of a response post to the experiment server under 50 participants.

  python benchmarks/experiment_load.py [--participants=50] [--json=load.json]
  python benchmarks/experiment_load.py --cpus=0,1     # pin the server and clients

Builds the quick stimulus set (or uses --workdir's), starts
`launch.experiment serve` in a subprocess on 127.0.0.1 with the default
store (SQLite in WAL mode, `synchronous=FULL`: every response on disk
before its 201), and runs the virtual participants
(`experiment.participants`) all at once, each taking the whole experiment
through the HTTP API, twice: paced (each waits its programmed reaction
time before posting, as people do) and back to back (a stress test). It
reports the p50 and p99 latency of a response post as the clients saw it
(they share the machine with the server), the ratio of the p99 to the 50 ms
goal, the trials per second, and the rows stored against those
acknowledged (lost: acknowledged but not stored).
Absolute times depend on the machine and on its disk's fsync (both are
printed).
"""

from __future__ import annotations

import os
import pathlib
import sqlite3
import subprocess
import sys
import tempfile

from absl import app
from absl import flags

import common

GOAL_MS = 50.0
_PARTICIPANTS = flags.DEFINE_integer("participants", 50, "Virtual participants at once.")
_WORKDIR = flags.DEFINE_string("workdir", None, "A built experiment (default: the quick set, "
                               "built in a temporary folder).")
_CPUS = flags.DEFINE_list("cpus", [], "Pin the server and the clients to these CPUs "
                          "(taskset), e.g. 0,1 for a 2-core measurement on a larger machine.")
_JSON = flags.DEFINE_string("json", "", "Also write the results to this file.")


def _fsync_ms(folder: pathlib.Path, repeats: int = 50) -> float:
  """Median time of one durable SQLite commit in `folder` (the disk's fsync)."""
  import time  # pylint: disable=g-import-not-at-top
  path = folder / "fsync_probe.sqlite"
  conn = sqlite3.connect(path)
  conn.execute("PRAGMA journal_mode=WAL")
  conn.execute("PRAGMA synchronous=FULL")
  conn.execute("CREATE TABLE IF NOT EXISTS t (a INTEGER PRIMARY KEY, b TEXT)")
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    conn.execute("INSERT INTO t (b) VALUES ('x')")
    conn.commit()
    times.append((time.perf_counter() - start) * 1000)
  conn.close()
  path.unlink()
  return sorted(times)[len(times) // 2]


def main(argv):
  del argv
  if _CPUS.value:
    os.sched_setaffinity(0, {int(c) for c in _CPUS.value})  # children inherit it
  from triplet_pose.experiment import design  # pylint: disable=g-import-not-at-top
  scratch = pathlib.Path(tempfile.mkdtemp(prefix="experiment_load_"))
  workdir = pathlib.Path(_WORKDIR.value) if _WORKDIR.value else scratch / "experiment"
  if not (workdir / design.MANIFEST).exists():
    subprocess.run([sys.executable, "-m", "launch.experiment", "build", f"--workdir={workdir}",
                    "--quick"], check=True, cwd=pathlib.Path(__file__).resolve().parents[1],
                   stdout=subprocess.DEVNULL)
  results = {"machine": common.describe_machine(), "cpus": sorted(os.sched_getaffinity(0)),
             "fsync_ms": _fsync_ms(scratch), "goal_ms": GOAL_MS, "modes": {}}
  rows = []
  for mode, think in (("paced", 1.0), ("back_to_back", 0.0)):
    r = _run(workdir, scratch / f"{mode}.sqlite", think=think)
    results["modes"][mode] = r
    rows.append([mode, r["participants"], r["posts"], r["stored"], r["lost"],
                 f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", f"{r['p99_over_goal']:.2f}x",
                 f"{r['trials_per_s']:.0f}"])
  columns = ["load", "participants", "posts", "stored", "lost", "p50 ms", "p99 ms",
             "p99 / 50 ms goal", "trials/s"]
  results["table"] = common.table(
      columns, rows, title=f"Response posts under {_PARTICIPANTS.value} participants at once",
      note="paced: each waits its programmed reaction time (~1.4 s) before posting, as a "
           "person does; back_to_back: no waiting (a stress test: latency is then the queue)")
  print(f"{results['table']['title']}; {len(results['cpus'])} CPUs: {results['machine']}; "
        f"SQLite durable commit (fsync) {results['fsync_ms']:.2f} ms")
  widths = [max(len(str(c)), *(len(str(row[i])) for row in rows)) for i, c in enumerate(columns)]
  for row in [columns] + rows:
    print("  ".join(str(v).rjust(w) for v, w in zip(row, widths)))
  if _JSON.value:
    common.write_json(_JSON.value, results, config={k: v.value for k, v in (
        ("participants", _PARTICIPANTS), ("workdir", _WORKDIR), ("cpus", _CPUS))})


def _run(workdir: pathlib.Path, db: pathlib.Path, *, think: float) -> dict:
  from triplet_pose.experiment import participants  # pylint: disable=g-import-not-at-top
  with participants.ServerProcess(workdir, database_url=f"sqlite:///{db}",
                                  log_path=db.with_suffix(".log")) as server:
    summary = participants.simulate(workdir, url=server.url, count=_PARTICIPANTS.value,
                                    concurrency=_PARTICIPANTS.value, think=think)
  with sqlite3.connect(db) as conn:
    stored = set(conn.execute("SELECT p.id, r.trial_index FROM responses r JOIN participants p "
                              "ON p.number = r.participant_number"))
  acknowledged = {(o.participant_id, i) for o in summary["outcomes"] for i in o.acknowledged}
  return {"participants": _PARTICIPANTS.value, "finished": summary["finished"],
          "posts": len(acknowledged), "stored": len(stored), "lost": len(acknowledged - stored),
          "unacknowledged_stored": len(stored - acknowledged), "retries": summary["retries"],
          "p50_ms": summary["post_ms"]["p50"], "p99_ms": summary["post_ms"]["p99"],
          "p99_over_goal": summary["post_ms"]["p99"] / GOAL_MS,
          "trials_per_s": len(acknowledged) / summary["seconds"], "seconds": summary["seconds"]}


if __name__ == "__main__":
  app.run(main)
