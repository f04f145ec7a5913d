"""Virtual participants: clients that take the whole experiment through the HTTP API.

Each takes the page's own routes (register, then next / respond until done)
with the page's retry rule: a dropped connection, a 5xx or a 429 is retried
with backoff; anything else is final. What it answers:

* 'programmed': a choice is correct with the probability that
  `config.simulate` programs for its condition (a psychometric function of
  log10 N: `analysis.psychometric`), otherwise one of the wrong candidates;
  a click lands near its target (within the noise) with that probability,
  otherwise anywhere. Catch trials are correct with `catch_accuracy`, except
  for a `careless_fraction` of participants who answer everything at random
  (the catch-trial rule must exclude them).
* 'observer': the computational observer's answers stored in the manifest.

`simulate` runs many at once (asyncio + httpx) and returns what each was
acknowledged, so tests can check that nothing acknowledged is lost;
`ServerProcess` starts `launch.experiment serve` in a subprocess (tests,
benchmarks).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import httpx
import numpy as np

from triplet_pose.experiment import analysis
from triplet_pose.experiment import design

RETRY_MS = (50, 100, 200, 400, 800, 1600)
logging.getLogger("httpx").setLevel(logging.WARNING)  # not a log line per request
MAX_ATTEMPTS = 60  # about a minute and a half of trying


@dataclasses.dataclass
class Outcome:
  """What one virtual participant did and was told."""
  participant_id: str = ""
  acknowledged: dict[int, Any] = dataclasses.field(default_factory=dict)  # index -> answer
  statuses: dict[int, int] = dataclasses.field(default_factory=dict)
  post_latency_ms: list[float] = dataclasses.field(default_factory=list)
  retries: int = 0
  careless: bool = False
  done: bool = False
  completion_code: str = ""
  error: str = ""


class _Answerer:
  """Chooses a participant's answers (programmed accuracy or the observer's)."""

  def __init__(self, manifest, *, mode: str, rng: np.random.Generator, careless: bool):
    self.manifest, self.mode, self.rng, self.careless = manifest, mode, rng, careless
    sim = manifest["config"]["simulate"]
    self.sim = sim
    self.by_url = {f"/{design.STIMULI}/{item['stimulus']}": item
                   for item in manifest["items"].values()}

  def p_correct(self, item) -> float:
    if self.careless:
      return 1.0 / max(len(item["choices"]), 4)
    if item["phase"] == "catch" or item["representation"] == "undegraded":
      return self.sim["catch_accuracy"]
    a = self.manifest["config"]["analysis"]
    return float(analysis.psychometric(
        math.log10(item["num_phosphenes"]),
        threshold=math.log10(self.sim["thresholds"][item["representation"]]),
        slope=self.sim["slope"], lapse=self.sim["lapse"], at=a["threshold_accuracy"]))

  def answer(self, trial: dict[str, Any]) -> dict[str, Any]:
    item = self.by_url[trial["stimulus_url"]]
    rt = float(self.rng.lognormal(math.log(self.sim["rt_ms"]), 0.35))
    if self.mode == "observer" and "observer" in item:
      obs = item["observer"]
      return ({"choice": obs["choice"]} if item["task"] == "choice"
              else {"clicks": obs["clicks"]}) | {"rt_ms": rt}
    hit = self.rng.random() < self.p_correct(item)
    if item["task"] == "choice":
      wrong = [k for k in range(len(item["choices"])) if k != item["answer"]]
      return {"choice": int(item["answer"]) if hit else int(self.rng.choice(wrong)),
              "rt_ms": rt}
    size = item["size"]
    if hit:
      noise = self.rng.normal(0, self.sim["click_noise"] * item["head_size"], (5, 2))
      clicks = np.clip(np.asarray(item["points"]) + noise, 0, size - 0.01)
    else:
      clicks = self.rng.uniform(0, size - 0.01, (5, 2))
    return {"clicks": np.round(clicks, 2).tolist(), "rt_ms": rt * 2}


async def _request(client, method: str, url: str, outcome: Outcome, **kwargs):
  """One request with the page's retry rule; returns the final response."""
  for attempt in range(MAX_ATTEMPTS):
    try:
      r = await client.request(method, url, **kwargs)
      if r.status_code < 500 and r.status_code != 429:
        return r
    except (OSError, asyncio.TimeoutError, Exception) as e:  # httpx.TransportError and kin
      if not _transport_error(e):
        raise
    outcome.retries += 1
    await asyncio.sleep(RETRY_MS[min(attempt, len(RETRY_MS) - 1)] / 1000)
  raise ConnectionError(f"{method} {url}: no answer after {MAX_ATTEMPTS} attempts")


def _transport_error(e: BaseException) -> bool:
  return isinstance(e, (httpx.TransportError, OSError, asyncio.TimeoutError))


async def take_part(client, manifest, *, mode: str, rng: np.random.Generator,
                    careless: bool = False, panel: dict[str, str] | None = None,
                    think: float = 0.0) -> Outcome:
  """One participant, from registration to the completion code.

  `think`: the fraction of each answer's reaction time the participant
  waits before posting it (1: a person's pace; 0: back to back).
  """
  out = Outcome(careless=careless)
  answerer = _Answerer(manifest, mode=mode, rng=rng, careless=careless)
  try:
    r = await _request(client, "POST", "/api/participants", out, json=panel or {})
    if r.status_code != 201:
      raise RuntimeError(f"registration answered {r.status_code}: {r.text[:200]}")
    out.participant_id = r.json()["participant_id"]
    auth = {"Authorization": "Bearer " + r.json()["token"]}
    base = f"/api/participants/{out.participant_id}"
    while True:
      r = await _request(client, "GET", base + "/next", out, headers=auth)
      if r.status_code != 200:
        raise RuntimeError(f"next answered {r.status_code}: {r.text[:200]}")
      trial = r.json()
      if trial.get("done"):
        out.done, out.completion_code = True, trial["completion_code"]
        return out
      answer = answerer.answer(trial)
      if think:
        await asyncio.sleep(think * answer["rt_ms"] / 1000)
      body = {"trial_index": trial["trial_index"], **answer,
              "px_per_deg": float(np.round(rng.uniform(25, 45), 3))}
      start = time.perf_counter()
      r = await _request(client, "POST", base + "/responses", out, headers=auth, json=body)
      out.post_latency_ms.append((time.perf_counter() - start) * 1000)
      if r.status_code not in (200, 201):
        raise RuntimeError(f"response answered {r.status_code}: {r.text[:200]}")
      out.acknowledged[trial["trial_index"]] = answer
      out.statuses[trial["trial_index"]] = r.status_code
  except (RuntimeError, ConnectionError, KeyError, ValueError) as e:
    out.error = f"{type(e).__name__}: {e}"
    return out


async def _simulate(manifest, *, url: str, count: int, mode: str, concurrency: int,
                    seed: int, app=None, think: float = 0.0) -> list[Outcome]:
  sim = manifest["config"]["simulate"]
  rng = np.random.default_rng(seed)
  careless = rng.random(count) < (sim["careless_fraction"] if mode == "programmed" else 0)
  gate = asyncio.Semaphore(concurrency)
  limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
  transport = httpx.ASGITransport(app=app) if app is not None else None
  async with httpx.AsyncClient(base_url=url, timeout=30.0, limits=limits,
                               transport=transport) as client:
    async def one(k):
      async with gate:
        return await take_part(client, manifest, mode=mode, careless=bool(careless[k]),
                               rng=np.random.default_rng([seed, k]),
                               panel={"prolific_pid": f"virtual{seed}x{k}",
                                      "study_id": "simulation", "session_id": f"s{k}"},
                               think=think)
    return list(await asyncio.gather(*(one(k) for k in range(count))))


def simulate(workdir: str | pathlib.Path, *, url: str, count: int, answers: str = "programmed",
             concurrency: int = 50, seed: int | None = None, app=None,
             think: float = 0.0) -> dict[str, Any]:
  """Runs `count` virtual participants against the server at `url`.

  With `app` (an ASGI application) the clients call it in this process
  instead of over the network (tests).

  Returns:
    {'outcomes': [Outcome], 'finished', 'acknowledged', 'retries', 'errors',
     'post_ms': {'p50', 'p99'}, 'seconds'}.

  Raises:
    ValueError: 'observer' answers without observer answers in the manifest.
  """
  manifest = design.load_manifest(workdir)
  if answers == "observer" and not any("observer" in i for i in manifest["items"].values()):
    raise ValueError("the manifest has no observer answers: build with "
                     "--config.observer.steps > 0")
  seed = manifest["config"]["simulate"]["seed"] if seed is None else seed
  start = time.perf_counter()
  outcomes = asyncio.run(_simulate(manifest, url=url.rstrip("/"), count=count, mode=answers,
                                   concurrency=concurrency, seed=seed, app=app,
                                   think=think))
  latencies = np.concatenate([o.post_latency_ms for o in outcomes] or [[np.nan]])
  return {"outcomes": outcomes, "finished": sum(o.done for o in outcomes),
          "acknowledged": sum(len(o.acknowledged) for o in outcomes),
          "retries": sum(o.retries for o in outcomes),
          "errors": [o.error for o in outcomes if o.error],
          "post_ms": {"p50": float(np.percentile(latencies, 50)),
                      "p99": float(np.percentile(latencies, 99))},
          "seconds": time.perf_counter() - start, "count": count}


def format_summary(summary: dict[str, Any]) -> str:
  lines = [f"{summary['finished']} of {summary['count']} participants finished; "
           f"{summary['acknowledged']} responses acknowledged; {summary['retries']} retries; "
           f"{summary['seconds']:.1f} s",
           f"response post latency: p50 {summary['post_ms']['p50']:.1f} ms, "
           f"p99 {summary['post_ms']['p99']:.1f} ms"]
  lines += [f"error: {e}" for e in summary["errors"][:10]]
  return "\n".join(lines)


def free_port() -> int:
  with contextlib.closing(socket.socket()) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class ServerProcess:
  """`launch.experiment serve` in a subprocess on 127.0.0.1 (tests, benchmarks)."""

  def __init__(self, workdir, *, database_url: str | None = None, port: int | None = None,
               log_path: str | pathlib.Path | None = None):
    self.workdir = pathlib.Path(workdir)
    self.database_url = database_url
    self.port = port or free_port()
    self.url = f"http://127.0.0.1:{self.port}"
    self.log_path = pathlib.Path(log_path or self.workdir / f"server_{self.port}.log")
    self.proc: subprocess.Popen | None = None
    self.first_output = ""

  def start(self, timeout: float = 60.0) -> "ServerProcess":
    cmd = [sys.executable, "-m", "launch.experiment", "serve", f"--workdir={self.workdir}",
           f"--port={self.port}"]
    if self.database_url:
      cmd.append(f"--database_url={self.database_url}")
    log = open(self.log_path, "ab")  # pylint: disable=consider-using-with
    root = pathlib.Path(__file__).resolve().parents[2]
    self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=root,
                                 env={**os.environ, "PYTHONUNBUFFERED": "1"})
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      if self.proc.poll() is not None:
        raise RuntimeError(f"the server exited ({self.proc.returncode}): "
                           f"{self.log_path.read_text()[-2000:]}")
      try:
        if httpx.get(self.url + "/experiment.json", timeout=1).status_code == 200:
          return self
      except httpx.TransportError:
        pass
      time.sleep(0.1)
    self.stop()
    raise TimeoutError(f"the server did not answer within {timeout} s")

  def kill(self) -> None:
    """kill -9: no shutdown, no flush."""
    if self.proc and self.proc.poll() is None:
      os.kill(self.proc.pid, signal.SIGKILL)
      self.proc.wait()

  def stop(self) -> None:
    if self.proc and self.proc.poll() is None:
      self.proc.send_signal(signal.SIGINT)
      try:
        self.proc.wait(timeout=10)
      except subprocess.TimeoutExpired:
        self.kill()

  def admin_token(self) -> str | None:
    for line in self.log_path.read_text().splitlines():
      if line.startswith("admin token"):
        return line.rsplit(": ", 1)[1].strip()
    return None

  def __enter__(self) -> "ServerProcess":
    return self.start()

  def __exit__(self, *exc) -> None:
    self.stop()
