"""Where responses live: SQLite in WAL mode by default, PostgreSQL by URL (SQLAlchemy 2).

Nothing acknowledged is ever lost: every response is committed (SQLite:
`synchronous=FULL`, so also through a power cut) before the server answers.
SQLite writes go through one writer thread that commits whatever writes are
waiting in one transaction (group commit: one fsync for many responses);
PostgreSQL commits each in its own. The primary key (participant, trial index) makes a
repeated post store nothing new; the hash of its answer says whether the
repeat was identical (the server answers 200) or not (409).

Tokens are random (`secrets`), stored as SHA-256 hashes and compared in
constant time (`hmac.compare_digest`): a stolen database does not let anyone
post as a participant or export the data. Tokens carry 192 bits, so a plain
hash suffices (a slow password hash guards guessable secrets).

* `Store(url)`: participants, the served and answered trials, responses,
  the admin token.
* `export_rows(store, manifest)` / `export_files(workdir, url, out=...)`:
  one row per trial with all its conditions, as CSV and JSON.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import hashlib
import hmac
import io
import json
import pathlib
import queue
import secrets
import threading
import time
from typing import Any, Callable, Iterable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from triplet_pose import storage
from triplet_pose.experiment import design

DATABASE_FILE = "responses.sqlite"
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I

metadata = sa.MetaData()
participants = sa.Table(
    "participants", metadata,
    # The arrival order: it picks the participant's counterbalancing group.
    sa.Column("number", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(32), unique=True, nullable=False),
    sa.Column("token_sha256", sa.String(64), nullable=False),
    sa.Column("completion_code", sa.String(64), nullable=False),
    sa.Column("prolific_pid", sa.String(128)),
    sa.Column("study_id", sa.String(128)),
    sa.Column("session_id", sa.String(128)),
    sa.Column("user_agent", sa.String(512)),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("served_index", sa.Integer, nullable=False),
    sa.Column("completed_at", sa.Float))
responses = sa.Table(
    "responses", metadata,
    sa.Column("participant_number", sa.Integer, sa.ForeignKey("participants.number"),
              primary_key=True),
    sa.Column("trial_index", sa.Integer, primary_key=True),
    sa.Column("item_id", sa.String(160), nullable=False),
    sa.Column("choice", sa.Integer),
    sa.Column("clicks", sa.Text),
    sa.Column("correct", sa.Boolean),
    sa.Column("rt_ms", sa.Float, nullable=False),
    sa.Column("px_per_deg", sa.Float),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("answer_sha256", sa.String(64), nullable=False))
settings = sa.Table(
    "settings", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False))


def sqlite_url(workdir: str | pathlib.Path) -> str:
  """The default store: WORKDIR/responses.sqlite."""
  return f"sqlite:///{pathlib.Path(workdir).absolute() / DATABASE_FILE}"


def token_hash(token: str) -> str:
  return hashlib.sha256(token.encode()).hexdigest()


def tokens_match(token: str, stored_hash: str) -> bool:
  """Constant-time comparison of a presented token with a stored hash."""
  return hmac.compare_digest(token_hash(token), stored_hash)


@dataclasses.dataclass(frozen=True)
class Participant:
  number: int
  id: str
  completion_code: str
  served_index: int
  completed_at: float | None


class NotFound(LookupError):
  """An unknown participant."""


class Forbidden(PermissionError):
  """A token that is not the participant's."""


def _sqlite_pragmas(dbapi_connection, _):
  cursor = dbapi_connection.cursor()
  # WAL: readers never block the writer; FULL: a commit is on disk when it
  # returns; busy_timeout: concurrent writers wait instead of failing.
  cursor.execute("PRAGMA journal_mode=WAL")
  cursor.execute("PRAGMA synchronous=FULL")
  cursor.execute("PRAGMA busy_timeout=30000")
  cursor.execute("PRAGMA foreign_keys=ON")
  cursor.close()


class _GroupCommitter:
  """One writer thread that commits queued writes together (SQLite).

  A durable commit costs one fsync (about 6 ms on a cloud disk). Writing
  each response in its own transaction would queue 50 participants behind
  50 fsyncs; instead the writer takes every write waiting in the queue, runs
  them in one transaction, commits once, and only then answers each caller:
  every response is still committed before the server acknowledges it.
  """

  def __init__(self, engine: sa.Engine, max_batch: int = 256):
    self.engine = engine
    self.max_batch = max_batch
    self.queue: queue.Queue = queue.Queue()
    self.thread = threading.Thread(target=self._run, name="sqlite-writer", daemon=True)
    self.thread.start()

  def submit(self, fn: Callable[[sa.Connection], Any]) -> Any:
    future: concurrent.futures.Future = concurrent.futures.Future()
    self.queue.put((fn, future))
    return future.result()

  def close(self) -> None:
    self.queue.put(None)
    self.thread.join(timeout=10)

  def _run(self) -> None:
    while True:
      batch = [self.queue.get()]
      while len(batch) < self.max_batch:
        try:
          batch.append(self.queue.get_nowait())
        except queue.Empty:
          break
      stop = None in batch
      batch = [b for b in batch if b is not None]
      results = []
      try:
        with self.engine.begin() as conn:
          for fn, _ in batch:
            results.append(fn(conn))
      except Exception as e:  # pylint: disable=broad-except  (each caller gets it)
        for _, future in batch:
          future.set_exception(e)
      else:
        for (_, future), result in zip(batch, results):
          future.set_result(result)
      if stop:
        return


class Store:
  """The experiment's database (created on first use)."""

  def __init__(self, url: str):
    self.url = url
    try:
      parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
      raise ValueError(f"not a database URL: {url!r} (e.g. sqlite:///path/responses.sqlite "
                       "or postgresql+psycopg://user@host:5432/db)") from None
    self.backend = parsed.get_backend_name()
    if self.backend == "sqlite":
      if parsed.database and parsed.database != ":memory:":
        pathlib.Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
      self.engine = sa.create_engine(url, connect_args={"check_same_thread": False,
                                                        "timeout": 30})
      sa.event.listen(self.engine, "connect", _sqlite_pragmas)
      self._insert = sqlite_insert
    elif self.backend == "postgresql":
      self.engine = sa.create_engine(url, pool_size=10, max_overflow=40, pool_pre_ping=True)
      self._insert = postgresql_insert
    else:
      raise ValueError(f"unsupported database {self.backend!r}: use sqlite or postgresql")
    try:
      metadata.create_all(self.engine)
    except sa.exc.OperationalError as e:
      raise ValueError(f"cannot open the database {parsed.render_as_string(hide_password=True)}: "
                       f"{str(e.orig).strip().splitlines()[0]}") from None
    # PostgreSQL takes concurrent commits itself (and several servers).
    self._committer = _GroupCommitter(self.engine) if self.backend == "sqlite" else None

  def _write(self, fn: Callable[[sa.Connection], Any]) -> Any:
    if self._committer is not None:
      return self._committer.submit(fn)
    with self.engine.begin() as conn:
      return fn(conn)

  def close(self) -> None:
    if self._committer is not None:
      self._committer.close()
    self.engine.dispose()

  # Participants.
  def create_participant(self, *, completion_code: str = "", prolific_pid: str | None = None,
                         study_id: str | None = None, session_id: str | None = None,
                         user_agent: str | None = None) -> tuple[Participant, str]:
    """A new participant and its token (returned once, stored hashed)."""
    token = secrets.token_urlsafe(24)
    pid = secrets.token_hex(8)
    code = completion_code or "".join(secrets.choice(_CODE_ALPHABET) for _ in range(8))
    values = dict(id=pid, token_sha256=token_hash(token), completion_code=code,
                  prolific_pid=prolific_pid, study_id=study_id, session_id=session_id,
                  user_agent=(user_agent or "")[:512], created_at=time.time(), served_index=-1)
    number = self._write(lambda conn: conn.execute(
        participants.insert().values(**values)).inserted_primary_key[0])
    return Participant(int(number), pid, code, -1, None), token

  def authenticate(self, participant_id: str, token: str) -> Participant:
    """The participant whose id and token these are.

    Raises:
      NotFound: no such participant.
      Forbidden: the token is not this participant's.
    """
    with self.engine.connect() as conn:
      row = conn.execute(sa.select(participants).where(
          participants.c.id == participant_id)).first()
    if row is None:
      raise NotFound(participant_id)
    if not tokens_match(token, row.token_sha256):
      raise Forbidden(participant_id)
    return Participant(row.number, row.id, row.completion_code, row.served_index,
                       row.completed_at)

  def answered(self, number: int) -> int:
    """How many trials the participant has answered (always the first ones)."""
    with self.engine.connect() as conn:
      return int(conn.execute(sa.select(sa.func.count()).select_from(responses).where(
          responses.c.participant_number == number)).scalar_one())

  def mark_served(self, number: int, index: int) -> None:
    self._write(lambda conn: conn.execute(participants.update().where(
        (participants.c.number == number) & (participants.c.served_index < index)
    ).values(served_index=index)))

  def mark_completed(self, number: int) -> None:
    self._write(lambda conn: conn.execute(participants.update().where(
        (participants.c.number == number) & participants.c.completed_at.is_(None)
    ).values(completed_at=time.time())))

  # Responses.
  def record(self, number: int, trial_index: int, *, item_id: str, answer: dict[str, Any],
             correct: bool | None, rt_ms: float, px_per_deg: float | None) -> str:
    """Stores one response, committed before this returns.

    Returns:
      'stored', 'duplicate' (the same answer was already stored) or
      'conflict' (a different answer was).
    """
    digest = hashlib.sha256(json.dumps([item_id, answer, rt_ms], sort_keys=True)
                            .encode()).hexdigest()
    row = dict(participant_number=number, trial_index=trial_index, item_id=item_id,
               choice=answer.get("choice"),
               clicks=json.dumps(answer["clicks"]) if "clicks" in answer else None,
               correct=correct, rt_ms=rt_ms, px_per_deg=px_per_deg,
               received_at=time.time(), answer_sha256=digest)

    def write(conn):
      # RETURNING says whether the row went in on every backend (rowcount
      # does not, once a driver returns rows of an INSERT).
      inserted = conn.execute(self._insert(responses).values(**row).on_conflict_do_nothing(
          index_elements=["participant_number", "trial_index"]).returning(
              responses.c.trial_index)).first()
      if inserted is not None:
        return "stored"
      stored = conn.execute(sa.select(responses.c.answer_sha256).where(
          (responses.c.participant_number == number)
          & (responses.c.trial_index == trial_index))).scalar_one()
      return "duplicate" if stored == digest else "conflict"
    return self._write(write)

  # The admin token.
  def ensure_admin_token(self) -> str | None:
    """Creates the admin token on first start: returns it once, else None."""
    token = secrets.token_urlsafe(24)
    inserted = self._write(lambda conn: conn.execute(
        self._insert(settings).values(key="admin_token_sha256", value=token_hash(token))
        .on_conflict_do_nothing(index_elements=["key"]).returning(settings.c.key)).first())
    return token if inserted is not None else None

  def reset_admin_token(self) -> str:
    """A new admin token (the old one stops working)."""
    token = secrets.token_urlsafe(24)

    def write(conn):
      conn.execute(settings.delete().where(settings.c.key == "admin_token_sha256"))
      conn.execute(settings.insert().values(key="admin_token_sha256", value=token_hash(token)))
    self._write(write)
    return token

  def admin_token_ok(self, token: str) -> bool:
    with self.engine.connect() as conn:
      stored = conn.execute(sa.select(settings.c.value).where(
          settings.c.key == "admin_token_sha256")).scalar_one_or_none()
    return stored is not None and tokens_match(token, stored)

  # Reading everything back.
  def all_responses(self) -> list[dict[str, Any]]:
    query = sa.select(participants, responses).join(
        responses, responses.c.participant_number == participants.c.number).order_by(
            participants.c.number, responses.c.trial_index)
    with self.engine.connect() as conn:
      return [dict(r._mapping) for r in conn.execute(query)]  # pylint: disable=protected-access

  def all_participants(self) -> list[dict[str, Any]]:
    with self.engine.connect() as conn:
      return [dict(r._mapping) for r in conn.execute(  # pylint: disable=protected-access
          sa.select(participants).order_by(participants.c.number))]


EXPORT_COLUMNS = (
    "participant_id", "participant_number", "prolific_pid", "study_id", "session_id",
    "completed", "trial_index", "block", "phase", "task", "item_id", "figure", "condition",
    "representation", "num_phosphenes", "stimulus", "choice", "answer", "correct", "clicks",
    "pckh", "rt_ms", "px_per_deg", "received_at")


def export_rows(store: Store, manifest: dict[str, Any]) -> list[dict[str, Any]]:
  """One row per stored trial, with the item's conditions and the score."""
  # Deferred: scoring imports JAX (+0.9 s measured), which the server never needs.
  from triplet_pose.experiment import scoring  # pylint: disable=g-import-not-at-top
  items = manifest["items"]
  rows = []
  for r in store.all_responses():
    item = items.get(r["item_id"], {})
    clicks = json.loads(r["clicks"]) if r["clicks"] else None
    trial = design.schedule(manifest, r["number"] - 1)[r["trial_index"]]
    rows.append({
        "participant_id": r["id"], "participant_number": r["number"],
        "prolific_pid": r["prolific_pid"], "study_id": r["study_id"],
        "session_id": r["session_id"], "completed": r["completed_at"] is not None,
        "trial_index": r["trial_index"], "block": trial["block"], "phase": trial["phase"],
        "task": item.get("task"), "item_id": r["item_id"], "figure": item.get("figure"),
        "condition": item.get("condition"), "representation": item.get("representation"),
        "num_phosphenes": item.get("num_phosphenes"), "stimulus": item.get("stimulus"),
        "choice": r["choice"], "answer": item.get("answer"), "correct": r["correct"],
        "clicks": clicks,
        "pckh": scoring.click_pckh(item, clicks) if clicks is not None else None,
        "rt_ms": r["rt_ms"], "px_per_deg": r["px_per_deg"], "received_at": r["received_at"]})
  return rows


def to_csv(rows: Iterable[dict[str, Any]]) -> str:
  out = io.StringIO()
  writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
  writer.writeheader()
  for row in rows:
    writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()})
  return out.getvalue()


def export_files(workdir: pathlib.Path, url: str, *, out: pathlib.Path) -> list[pathlib.Path]:
  """Writes out/responses.csv and out/responses.json; returns their paths."""
  store = Store(url)
  try:
    rows = export_rows(store, design.load_manifest(workdir))
  finally:
    store.close()
  out.mkdir(parents=True, exist_ok=True)
  paths = [storage.write_text(out / "responses.csv", to_csv(rows)),
           storage.write_text(out / "responses.json", json.dumps(rows, indent=1))]
  return paths
