"""The experiment's web application: the page, the stimuli and the HTTP API.

Starlette under uvicorn: a small, well-kept ASGI toolkit (the core of
FastAPI) with no template engine, ORM or session layer to configure; the
API is four routes whose validation is easier to read written out than
declared. uvicorn serves it with one event loop per process; the store's
blocking calls run in its thread pool, so one slow commit never stalls
other participants. Several workers (`--workers`) need PostgreSQL.

Routes (docs/experiment.md has the full contract):

* `POST /api/participants` -> 201 {participant_id, token}
* `GET  /api/participants/{id}/next` -> the next unanswered trial, or done
* `POST /api/participants/{id}/responses` -> 201 stored, 200 same answer
  again, 409 another answer already stored, 4xx bad input (nothing stored)
* `GET  /api/export` (admin token) -> CSV
* `/` the page, `/static/*` its files, `/vendor/*` the jsPsych bundles
  (an allowlist out of node_modules), `/stimuli/*` the workdir's stimuli,
  `/experiment.json` the study's public settings.

Every error is JSON `{"error": "<one line>"}`; no traceback reaches a client.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import re
import sys
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
import uvicorn

from triplet_pose.experiment import design
from triplet_pose.experiment import store as store_lib

WEB = pathlib.Path(__file__).parent / "web"
MAX_BODY = 16 * 1024  # bytes: a response is < 1 kB
MAX_RT_MS = 600_000.0  # 10 min: longer is no reaction time (breaks are separate)
_ID_FIELD = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_PARTICIPANT_FIELDS = ("prolific_pid", "study_id", "session_id")
_RESPONSE_FIELDS = {"trial_index", "rt_ms", "choice", "clicks", "px_per_deg"}
VENDOR = {  # served name -> file under web/node_modules
    "jspsych.js": "jspsych/dist/index.browser.min.js",
    "jspsych.css": "jspsych/css/jspsych.css",
    "plugin-html-button-response.js":
        "@jspsych/plugin-html-button-response/dist/index.browser.min.js",
    "plugin-image-button-response.js":
        "@jspsych/plugin-image-button-response/dist/index.browser.min.js",
    "plugin-virtual-chinrest.js": "@jspsych/plugin-virtual-chinrest/dist/index.browser.min.js",
    "plugin-call-function.js": "@jspsych/plugin-call-function/dist/index.browser.min.js",
}
SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
     b"font-src 'self' data:; script-src 'self'; connect-src 'self'; object-src 'none'; "
     b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),  # the URL carries panel ids
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]


class ApiError(Exception):
  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status
    self.message = message


def _error(status: int, message: str) -> JSONResponse:
  return JSONResponse({"error": message}, status_code=status)


class SecurityHeaders:
  """Pure ASGI middleware: security headers on every answer; API answers not cached."""

  def __init__(self, app):
    self.app = app

  async def __call__(self, scope, receive, send):
    if scope["type"] != "http":
      return await self.app(scope, receive, send)
    api = scope["path"].startswith("/api/")

    async def send_with_headers(message):
      if message["type"] == "http.response.start":
        headers = list(message.get("headers", [])) + SECURITY_HEADERS
        if api:
          headers.append((b"cache-control", b"no-store"))
        message["headers"] = headers
      await send(message)
    await self.app(scope, receive, send_with_headers)


async def read_json(request: Request, cap: int = MAX_BODY) -> Any:
  """The JSON body, or ApiError 413 (too big), 415 (not JSON) or 400 (malformed)."""
  kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
  if kind != "application/json":
    raise ApiError(415, f"content type must be application/json, got {kind or 'none'!r}")
  length = request.headers.get("content-length")
  if length is not None and (not length.isdigit() or int(length) > cap):
    raise ApiError(413, f"body larger than {cap} bytes")
  body = bytearray()
  async for chunk in request.stream():
    body += chunk
    if len(body) > cap:
      raise ApiError(413, f"body larger than {cap} bytes")
  try:
    return json.loads(body)
  except (ValueError, UnicodeDecodeError) as e:
    raise ApiError(400, f"malformed JSON: {str(e).splitlines()[0]}") from None


def _bearer(request: Request) -> str:
  header = request.headers.get("authorization", "")
  scheme, _, token = header.partition(" ")
  if scheme.lower() != "bearer" or not token.strip():
    raise ApiError(401, "missing 'Authorization: Bearer <token>' header")
  return token.strip()


def _number(value: Any, name: str) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
    raise ApiError(422, f"{name} must be a finite number, got {json.dumps(value)[:40]}")
  return float(value)


def _integer(value: Any, name: str) -> int:
  if isinstance(value, bool) or not isinstance(value, int):
    raise ApiError(422, f"{name} must be an integer, got {json.dumps(value)[:40]}")
  return value


def validate_answer(item: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
  """The answer part of a response ({'choice': i} or {'clicks': [...]}), checked."""
  if item["task"] == "choice":
    if "clicks" in body or "choice" not in body:
      raise ApiError(422, "a choice trial takes 'choice' (an index into choices), not 'clicks'")
    choice = _integer(body["choice"], "choice")
    if not 0 <= choice < len(item["choices"]):
      raise ApiError(422, f"choice {choice} is not among the {len(item['choices'])} options")
    return {"choice": choice}
  if "choice" in body or "clicks" not in body:
    raise ApiError(422, "a click trial takes 'clicks' ([[x, y], ...]), not 'choice'")
  clicks, size, count = body["clicks"], item["size"], len(design.CLICK_TARGETS)
  if not isinstance(clicks, list) or len(clicks) != count:
    raise ApiError(422, f"clicks must be a list of {count} [x, y] points")
  out = []
  for k, point in enumerate(clicks):
    if not isinstance(point, list) or len(point) != 2:
      raise ApiError(422, f"clicks[{k}] must be [x, y]")
    x, y = (_number(v, f"clicks[{k}]") for v in point)
    if not (0 <= x < size and 0 <= y < size):
      raise ApiError(422, f"clicks[{k}] = [{x:g}, {y:g}] is outside the {size}x{size} image")
    out.append([x, y])
  return {"clicks": out}


class Experiment:
  """The routes, bound to one workdir and one store."""

  def __init__(self, workdir: pathlib.Path, database_url: str):
    self.workdir = pathlib.Path(workdir)
    self.manifest = design.load_manifest(self.workdir)
    self.config = self.manifest["config"]
    self.store = store_lib.Store(database_url)

  def trials(self, participant: store_lib.Participant):
    return design.schedule(self.manifest, participant.number - 1)

  async def auth(self, request: Request) -> store_lib.Participant:
    token = _bearer(request)
    pid = request.path_params["pid"]
    try:
      return await run_in_threadpool(self.store.authenticate, pid, token)
    except store_lib.NotFound:
      raise ApiError(404, f"unknown participant {pid[:40]!r}") from None
    except store_lib.Forbidden:
      raise ApiError(403, "this token does not belong to this participant") from None

  async def create_participant(self, request: Request) -> Response:
    body = await read_json(request)
    if not isinstance(body, dict):
      raise ApiError(422, "the body must be a JSON object")
    unknown = set(body) - set(_PARTICIPANT_FIELDS)
    if unknown:
      raise ApiError(422, f"unknown fields {sorted(unknown)}; allowed: {list(_PARTICIPANT_FIELDS)}")
    ids = {}
    for name in _PARTICIPANT_FIELDS:
      value = body.get(name)
      if value in (None, ""):
        continue
      if not isinstance(value, str) or not _ID_FIELD.match(value):
        raise ApiError(422, f"{name} must be 1-128 letters, digits or _.:-")
      ids[name] = value
    participant, token = await run_in_threadpool(
        self.store.create_participant, completion_code=self.config["completion_code"],
        user_agent=request.headers.get("user-agent"), **ids)
    return JSONResponse({"participant_id": participant.id, "token": token}, status_code=201)

  async def next_trial(self, request: Request) -> Response:
    participant = await self.auth(request)
    trials = self.trials(participant)
    answered = await run_in_threadpool(self.store.answered, participant.number)
    if answered >= len(trials):
      await run_in_threadpool(self.store.mark_completed, participant.number)
      done = {"done": True, "completion_code": participant.completion_code}
      if self.config["completion_url"]:
        done["redirect_url"] = self.config["completion_url"].replace(
            "{code}", participant.completion_code)
      return JSONResponse(done)
    if participant.served_index < answered:
      await run_in_threadpool(self.store.mark_served, participant.number, answered)
    return JSONResponse(design.public_trial(self.manifest, trials[answered], len(trials)))

  async def post_response(self, request: Request) -> Response:
    participant = await self.auth(request)
    body = await read_json(request)
    if not isinstance(body, dict):
      raise ApiError(422, "the body must be a JSON object")
    unknown = set(body) - _RESPONSE_FIELDS
    if unknown:
      raise ApiError(422, f"unknown fields {sorted(unknown)}; allowed: {sorted(_RESPONSE_FIELDS)}")
    for name in ("trial_index", "rt_ms"):
      if name not in body:
        raise ApiError(422, f"missing field {name!r}")
    index = _integer(body["trial_index"], "trial_index")
    trials = self.trials(participant)
    if not 0 <= index < len(trials):
      raise ApiError(422, f"trial_index {index} is out of range (0..{len(trials) - 1})")
    rt = _number(body["rt_ms"], "rt_ms")
    if not 0 < rt <= MAX_RT_MS:
      raise ApiError(422, f"rt_ms {rt:g} is not a reaction time (0 < rt_ms <= {MAX_RT_MS:g})")
    px_per_deg = None
    if body.get("px_per_deg") is not None:
      px_per_deg = _number(body["px_per_deg"], "px_per_deg")
      if not 1 <= px_per_deg <= 1000:
        raise ApiError(422, f"px_per_deg {px_per_deg:g} is outside 1..1000")
    if index > participant.served_index:
      raise ApiError(409, f"trial {index} has not been served yet (GET .../next first)")
    trial = trials[index]
    item = self.manifest["items"][trial["item"]]
    answer = validate_answer(item, body)
    correct = design.choice_correct(item, answer["choice"]) if "choice" in answer else None
    status = await run_in_threadpool(
        self.store.record, participant.number, index, item_id=item["id"], answer=answer,
        correct=correct, rt_ms=rt, px_per_deg=px_per_deg)
    if status == "conflict":
      raise ApiError(409, f"trial {index} already has a different answer")
    if index == len(trials) - 1:
      await run_in_threadpool(self.store.mark_completed, participant.number)
    out: dict[str, Any] = {"stored": True, "trial_index": index}
    if trial["phase"] == "practice":  # feedback: practice answers only
      out.update({"correct": correct, "answer": item["answer"]} if correct is not None
                 else {"answer_points": item["points"]})
    return JSONResponse(out, status_code=201 if status == "stored" else 200)

  async def export(self, request: Request) -> Response:
    token = _bearer(request)
    if not await run_in_threadpool(self.store.admin_token_ok, token):
      raise ApiError(403, "not the admin token")
    rows = await run_in_threadpool(store_lib.export_rows, self.store, self.manifest)
    return Response(store_lib.to_csv(rows), media_type="text/csv",
                    headers={"content-disposition": 'attachment; filename="responses.csv"'})

  async def settings(self, request: Request) -> Response:
    del request
    d = self.manifest["design"]
    practice = self.manifest["items"][f"choice_practice/{d['choice_practice_figures'][0]}"] \
        if d["choice_practice_figures"] else None
    return JSONResponse({
        "title": self.config["title"], "view_angle_deg": d["view_angle_deg"],
        "stimulus_size": d["stimulus_size"], "candidate_size": d["candidate_size"],
        "click_targets": d["click_targets"], "blindspot_reps": self.config["blindspot_reps"],
        "example": None if practice is None else {
            "figure": f"/{design.STIMULI}/figures/f{practice['figure']:04d}.png",
            "phosphenes": f"/{design.STIMULI}/{practice['stimulus']}"}})


def _guard(handler):
  async def guarded(request: Request) -> Response:
    try:
      return await handler(request)
    except ApiError as e:
      return _error(e.status, e.message)
  return guarded


def create_app(workdir: str | pathlib.Path, database_url: str) -> Starlette:
  """The application serving `workdir`'s experiment, storing into `database_url`.

  Raises:
    FileNotFoundError: no manifest.
  """
  exp = Experiment(pathlib.Path(workdir), database_url)
  stimuli = pathlib.Path(workdir) / design.STIMULI

  async def index(request: Request) -> Response:
    del request
    return FileResponse(WEB / "static" / "index.html", headers={"cache-control": "no-cache"})

  async def vendor(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in VENDOR:
      raise ApiError(404, "not found")
    if not (WEB / "node_modules" / VENDOR[name]).exists():
      raise ApiError(404, f"{name} is not installed: {missing_packages()}")
    return FileResponse(WEB / "node_modules" / VENDOR[name])

  async def favicon(request: Request) -> Response:
    del request
    return Response(status_code=204)

  async def not_found(request: Request, exc: HTTPException) -> Response:
    del request
    return _error(exc.status_code, str(exc.detail).splitlines()[0] if exc.detail else "error")

  async def server_error(request: Request, exc: Exception) -> Response:
    del request, exc  # logged by uvicorn; the client learns nothing of the internals
    return _error(500, "internal server error")

  routes = [
      Route("/", _guard(index)),
      Route("/favicon.ico", favicon),
      Route("/experiment.json", _guard(exp.settings)),
      Route("/vendor/{name}", _guard(vendor)),
      Route("/api/participants", _guard(exp.create_participant), methods=["POST"]),
      Route("/api/participants/{pid}/next", _guard(exp.next_trial), methods=["GET"]),
      Route("/api/participants/{pid}/responses", _guard(exp.post_response), methods=["POST"]),
      Route("/api/export", _guard(exp.export), methods=["GET"]),
      # StaticFiles resolves symlinks and refuses any path outside its folder.
      Mount("/static", StaticFiles(directory=WEB / "static")),
      Mount(f"/{design.STIMULI}", StaticFiles(directory=stimuli, check_dir=True)),
  ]
  app = Starlette(routes=routes, exception_handlers={HTTPException: not_found,
                                                     Exception: server_error})
  app.state.experiment = exp
  app.add_middleware(SecurityHeaders)
  return app


def missing_packages() -> str | None:
  """What to run when the page's npm packages are missing (None: installed)."""
  if all((WEB / "node_modules" / path).exists() for path in VENDOR.values()):
    return None
  return f"the page's packages are missing: run `npm ci --prefix {WEB}`"


def app_from_environment() -> Starlette:
  """`create_app` from TRIPLET_POSE_EXPERIMENT_{WORKDIR,DATABASE_URL} (uvicorn workers)."""
  return create_app(os.environ["TRIPLET_POSE_EXPERIMENT_WORKDIR"],
                    os.environ["TRIPLET_POSE_EXPERIMENT_DATABASE_URL"])


def serve(workdir: pathlib.Path, *, host: str, port: int, database_url: str,
          workers: int = 1) -> None:
  """Runs the server until interrupted; prints the admin token on first start."""
  if workers > 1 and database_url.startswith("sqlite"):
    raise ValueError("several workers need a PostgreSQL --database_url (SQLite allows "
                     "one writing process at a time)")
  app = create_app(workdir, database_url)  # checks everything before listening
  if missing_packages():  # the API still works (virtual participants); the page does not
    print(f"warning: {missing_packages()}", file=sys.stderr, flush=True)
  token = app.state.experiment.store.ensure_admin_token()
  if token:
    print(f"admin token (shown once, stored hashed; GET /api/export with "
          f"'Authorization: Bearer <token>'): {token}", flush=True)
  print(f"serving {workdir} at http://{host}:{port}/ (store: "
        f"{app.state.experiment.store.engine.url.render_as_string(hide_password=True)})",
        flush=True)
  options = dict(host=host, port=port, log_level="warning", server_header=False,
                 timeout_keep_alive=30, backlog=1024)
  if workers > 1:
    os.environ["TRIPLET_POSE_EXPERIMENT_WORKDIR"] = str(pathlib.Path(workdir).absolute())
    os.environ["TRIPLET_POSE_EXPERIMENT_DATABASE_URL"] = database_url
    uvicorn.run("triplet_pose.experiment.server:app_from_environment", factory=True,
                workers=workers, **options)
  else:
    uvicorn.run(app, **options)
