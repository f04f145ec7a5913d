"""Nothing is lost: 50 virtual participants at once, and a kill -9 of the server.

Both run `launch.experiment serve` in a subprocess on 127.0.0.1 with the
default store (SQLite, WAL) and the virtual participants of
`experiment.participants` (the page's routes and retry rule). Bounded: a
quick stimulus set (29 trials each), and every client gives up after about
a minute and a half of failed retries.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import pytest

from triplet_pose.experiment import design
from triplet_pose.experiment import participants
from triplet_pose.experiment import stimuli


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  path = tmp_path_factory.getbasetemp() / "experiment_quick"
  if not (path / design.MANIFEST).exists():
    stimuli.build(design.experiment_config("quick"), path, log=lambda m: None)
  return path


def _stored(db) -> dict[tuple[str, int], dict]:
  with sqlite3.connect(db) as conn:
    rows = conn.execute(
        "SELECT p.id, r.trial_index, r.choice, r.clicks FROM responses r "
        "JOIN participants p ON p.number = r.participant_number").fetchall()
  return {(pid, index): ({"choice": choice} if clicks is None else
                         {"clicks": json.loads(clicks)}) for pid, index, choice, clicks in rows}


def _check_nothing_lost(summary, db, total_trials):
  stored = _stored(db)
  acknowledged = {(o.participant_id, index): answer for o in summary["outcomes"]
                  for index, answer in o.acknowledged.items()}
  assert not summary["errors"], summary["errors"][:3]
  assert summary["finished"] == summary["count"]
  assert len(acknowledged) == summary["count"] * total_trials
  # Every acknowledged response is stored, as acknowledged, exactly once
  # (the primary key allows no second row), and nothing else is stored.
  assert set(stored) == set(acknowledged)
  for key, answer in acknowledged.items():
    got = stored[key]
    if "choice" in answer:
      assert got == {"choice": answer["choice"]}, key
    else:
      assert got["clicks"] == [[float(x), float(y)] for x, y in answer["clicks"]], key
  return len(stored)


def test_fifty_participants_at_once_lose_nothing(workdir, tmp_path):
  db = tmp_path / "load.sqlite"
  total = len(design.schedule(design.load_manifest(workdir), 0))
  with participants.ServerProcess(workdir, database_url=f"sqlite:///{db}",
                                  log_path=tmp_path / "server.log") as server:
    summary = participants.simulate(workdir, url=server.url, count=50, concurrency=50)
  assert _check_nothing_lost(summary, db, total) == 50 * total


def test_kill_9_mid_run_then_restart(workdir, tmp_path):
  db = tmp_path / "kill.sqlite"
  total = len(design.schedule(design.load_manifest(workdir), 0))
  count = 10
  server = participants.ServerProcess(workdir, database_url=f"sqlite:///{db}",
                                      log_path=tmp_path / "server.log").start()
  result = {}
  clients = threading.Thread(target=lambda: result.update(participants.simulate(
      workdir, url=server.url, count=count, concurrency=count)))
  clients.start()
  try:
    deadline = time.monotonic() + 120
    while len(_stored(db)) < count * total // 3:  # a third of the way through
      assert time.monotonic() < deadline and clients.is_alive()
      time.sleep(0.05)
    server.kill()  # SIGKILL: no shutdown, no flush
    before = len(_stored(db))
    time.sleep(1.0)  # clients meet a closed port and retry
    server.start()  # the same port and database
    clients.join(timeout=240)
    assert not clients.is_alive()
  finally:
    server.stop()
  assert 0 < before < count * total
  assert result["retries"] > 0  # the clients did meet the dead server
  assert _check_nothing_lost(result, db, total) == count * total
