"""The experiment's store against a real PostgreSQL server.

The server comes from TRIPLET_POSE_TEST_POSTGRES_URL (`.ci/run` starts a
throwaway one and exports it); without it, a throwaway cluster is started
here when PostgreSQL's binaries are installed (as root: run as `postgres`).
Under CI=true a missing server fails instead of skipping.

Two server processes share the database (a lab running several servers),
with virtual participants on both; the store's idempotency and the admin
token are checked on PostgreSQL itself.
"""

from __future__ import annotations

import glob
import os
import pathlib
import shutil
import subprocess
import tempfile
import threading

import pytest

import peers
from triplet_pose.experiment import design
from triplet_pose.experiment import participants
from triplet_pose.experiment import stimuli
from triplet_pose.experiment import store as store_lib

ENV = "TRIPLET_POSE_TEST_POSTGRES_URL"
peers.require("psycopg", why="the PostgreSQL store test")


def _throwaway_cluster():
  """Starts a PostgreSQL cluster in a temporary folder; yields its URL."""
  bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
  if not bins or os.geteuid() != 0 or shutil.which("su") is None:
    return None
  bindir = pathlib.Path(bins[-1]).parent
  root = pathlib.Path(tempfile.mkdtemp(prefix="tp_pg_"))
  port = participants.free_port()
  shutil.chown(root, "postgres", "postgres")
  (root / "sock").mkdir()
  shutil.chown(root / "sock", "postgres", "postgres")
  as_pg = lambda cmd: subprocess.run(["su", "postgres", "-c", cmd], check=True,
                                     capture_output=True, timeout=120)
  as_pg(f"{bindir}/initdb -D {root}/data -U postgres --auth=trust -E UTF8 --no-locale")
  as_pg(f"{bindir}/pg_ctl -D {root}/data -l {root}/log -w -o "
        f"'-k {root}/sock -p {port} -c listen_addresses=127.0.0.1' start")
  stop = lambda: (as_pg(f"{bindir}/pg_ctl -D {root}/data -m fast -w stop"),
                  shutil.rmtree(root, ignore_errors=True))
  return f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", stop


@pytest.fixture(scope="module")
def postgres_url():
  url = os.environ.get(ENV)
  if url:
    yield url
    return
  started = _throwaway_cluster()
  if started is None:
    reason = (f"no PostgreSQL: set {ENV} or install postgresql (apt-get install postgresql) "
              "and run as root")
    if peers.in_ci():
      pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)
  url, stop = started
  yield url
  stop()


@pytest.fixture
def database(postgres_url):
  """A fresh database on the server for each test."""
  import sqlalchemy as sa  # pylint: disable=g-import-not-at-top
  name = f"tp_{os.getpid()}_{threading.get_ident() % 100000}"
  admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
  with admin.connect() as conn:
    conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
    conn.execute(sa.text(f"CREATE DATABASE {name}"))
  url = sa.engine.make_url(postgres_url).set(database=name).render_as_string(
      hide_password=False)
  yield url
  with admin.connect() as conn:
    conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
  admin.dispose()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  path = tmp_path_factory.getbasetemp() / "experiment_quick"
  if not (path / design.MANIFEST).exists():
    stimuli.build(design.experiment_config("quick"), path, log=lambda m: None)
  return path


def test_store_on_postgres(database):
  store = store_lib.Store(database)
  try:
    assert store.backend == "postgresql"
    person, token = store.create_participant(prolific_pid="pg1")
    assert store.authenticate(person.id, token).number == person.number
    with pytest.raises(store_lib.Forbidden):
      store.authenticate(person.id, token + "x")
    with pytest.raises(store_lib.NotFound):
      store.authenticate("nobody", token)
    kwargs = dict(item_id="choice/0/joints/100", correct=True, rt_ms=500.0, px_per_deg=30.0)
    assert store.record(person.number, 0, answer={"choice": 1}, **kwargs) == "stored"
    assert store.record(person.number, 0, answer={"choice": 1}, **kwargs) == "duplicate"
    assert store.record(person.number, 0, answer={"choice": 2}, **kwargs) == "conflict"
    assert store.answered(person.number) == 1
    admin = store.ensure_admin_token()
    assert admin and store.ensure_admin_token() is None
    assert store.admin_token_ok(admin) and not store.admin_token_ok("guess")
  finally:
    store.close()


def test_two_servers_share_one_postgres(workdir, database, tmp_path):
  total = len(design.schedule(design.load_manifest(workdir), 0))
  with participants.ServerProcess(workdir, database_url=database,
                                  log_path=tmp_path / "a.log") as a, \
       participants.ServerProcess(workdir, database_url=database,
                                  log_path=tmp_path / "b.log") as b:
    results = {}
    runs = [threading.Thread(target=lambda s=s, k=k: results.update({k: participants.simulate(
        workdir, url=s.url, count=5, concurrency=5, seed=k)})) for k, s in enumerate((a, b))]
    for t in runs:
      t.start()
    for t in runs:
      t.join(timeout=240)
  store = store_lib.Store(database)
  try:
    people = store.all_participants()
    rows = store.all_responses()
  finally:
    store.close()
  assert all(r["finished"] == 5 and not r["errors"] for r in results.values())
  assert len(people) == 10 and len({p["number"] for p in people}) == 10
  assert len(rows) == 10 * total
  assert len({(r["number"], r["trial_index"]) for r in rows}) == len(rows)
