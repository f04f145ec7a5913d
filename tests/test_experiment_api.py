"""The experiment's stimuli, design and HTTP API (starlette's TestClient, SQLite).

Every kind of bad input gets a 4xx with a one-line reason and stores
nothing; a repeated post stores once; static paths stay in their folders;
the export needs the admin token; the design is balanced.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
from starlette.testclient import TestClient

from triplet_pose.data.synthetic_figures import figures
from triplet_pose.experiment import design
from triplet_pose.experiment import server
from triplet_pose.experiment import stimuli
from triplet_pose.experiment import store as store_lib
from triplet_pose.readability import choice


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  path = tmp_path_factory.getbasetemp() / "experiment_quick"
  if not (path / design.MANIFEST).exists():
    stimuli.build(design.experiment_config("quick"), path, log=lambda m: None)
  return path


@pytest.fixture
def app(workdir, tmp_path):
  application = server.create_app(workdir, f"sqlite:///{tmp_path / 'r.sqlite'}")
  yield application
  application.state.experiment.store.close()


@pytest.fixture
def client(app):
  return TestClient(app, raise_server_exceptions=False)


def _join(client, **panel):
  r = client.post("/api/participants", json=panel)
  assert r.status_code == 201, r.text
  body = r.json()
  assert set(body) == {"participant_id", "token"}
  return body["participant_id"], {"Authorization": f"Bearer {body['token']}"}


def _answer(trial, choice_index=0):
  body = {"trial_index": trial["trial_index"], "rt_ms": 812.5}
  if trial["task"] == "choice":
    body["choice"] = choice_index
  else:
    body["clicks"] = [[10.0, 20.0]] * 5
  return body


def _rows(app):
  return app.state.experiment.store.all_responses()


# Stimuli and design.
def test_build_is_deterministic_and_resumable(workdir, tmp_path):
  manifest = design.load_manifest(workdir)
  victim = workdir / design.STIMULI / manifest["items"]["choice/0/joints/100"]["stimulus"]
  before = victim.read_bytes()
  victim.unlink()
  text = (workdir / design.MANIFEST).read_text()
  stimuli.build(design.experiment_config("quick"), workdir, log=lambda m: None)
  assert victim.read_bytes() == before  # redrawn identically, the rest kept
  assert (workdir / design.MANIFEST).read_text() == text
  other = design.experiment_config("quick")
  other.choice_figures = 8
  with pytest.raises(ValueError, match="another config"):
    stimuli.build(other, workdir, log=lambda m: None)


def test_choice_items_have_controlled_distractors(workdir):
  manifest = design.load_manifest(workdir)
  config = manifest["config"]
  lo, hi = config["distractor_distance"]
  pool = stimuli.pose_pool(design.experiment_config("quick"))
  answers = []
  for item in manifest["items"].values():
    if item["task"] != "choice":
      continue
    assert len(item["choices"]) == 4 and 0 <= item["answer"] < 4
    target = figures.make_example(config["data_seed"], item["figure"],
                                  stream=config["figure_stream"])["joints"]
    d = choice.pose_distance(target, pool[item["distractors"]])
    assert np.all((d >= lo) & (d <= hi)), d
    answers.append(item["answer"])
  assert len(set(answers)) > 1  # the answer is not always in the same place


def test_counterbalancing(workdir):
  manifest = design.load_manifest(workdir)
  conds = manifest["design"]["conditions"]
  seen = {}
  for number in range(len(conds)):
    trials = design.schedule(manifest, number)
    items = [manifest["items"][t["item"]] for t in trials]
    figures = [(i["block"], i["figure"]) for i in items]
    assert len(figures) == len(set(figures))  # no figure twice
    main = [i for i in items if i["phase"] == "main"]
    for block in ("choice", "click"):
      counts = {c: sum(i["condition"] == c and i["block"] == block for i in main) for c in conds}
      assert len(set(counts.values())) == 1, counts  # every condition equally often
    for i in main:
      seen.setdefault((i["block"], i["figure"]), set()).add(i["condition"])
    assert sum(i["phase"] == "catch" for i in items) == manifest["config"]["catch_trials"]
    assert items[0]["phase"] == "practice"
  # Over one cycle of groups every figure appears in every condition.
  assert all(s == set(conds) for s in seen.values())
  orders = {design.schedule(manifest, n)[-1]["block"] for n in range(2 * len(conds))}
  assert orders == {"choice", "click"}  # block order counterbalanced


def test_choice_rule_picks_the_matching_pose():
  rng = np.random.default_rng(0)
  poses = rng.normal(size=(4, 16, 2)) * 30 + 100
  read = poses[2] * 1.7 + 40 + rng.normal(size=(16, 2))  # moved, scaled, a little noise
  assert choice.choose(read, poses) == 2
  swapped = read[choice.SWAP]  # left and right named the other way round
  assert choice.choose(swapped, poses) == 2


# The API.
def test_full_run_and_resume(client, app):
  pid, auth = _join(client, prolific_pid="p1", study_id="s1", session_id="x1")
  first = client.get(f"/api/participants/{pid}/next", headers=auth).json()
  assert first["trial_index"] == 0 and first["practice"]
  assert "answer" not in first and first["stimulus_url"].startswith("/stimuli/")
  again = client.get(f"/api/participants/{pid}/next", headers=auth).json()
  assert again == first  # a reload gets the same unanswered trial
  count = 0
  while True:
    trial = client.get(f"/api/participants/{pid}/next", headers=auth).json()
    if trial.get("done"):
      break
    r = client.post(f"/api/participants/{pid}/responses", json=_answer(trial), headers=auth)
    assert r.status_code == 201, r.text
    if trial["practice"] and trial["task"] == "choice":
      assert "correct" in r.json()
    count += 1
  assert trial["completion_code"]
  rows = _rows(app)
  assert [r["trial_index"] for r in rows] == list(range(count))
  assert rows[0]["prolific_pid"] == "p1" and rows[0]["completed_at"] is not None


def test_repeated_post_is_stored_once(client, app):
  pid, auth = _join(client)
  trial = client.get(f"/api/participants/{pid}/next", headers=auth).json()
  url = f"/api/participants/{pid}/responses"
  assert client.post(url, json=_answer(trial), headers=auth).status_code == 201
  assert client.post(url, json=_answer(trial), headers=auth).status_code == 200
  r = client.post(url, json=_answer(trial, choice_index=1), headers=auth)
  assert r.status_code == 409 and "different answer" in r.json()["error"]
  assert len(_rows(app)) == 1 and _rows(app)[0]["choice"] == 0


def _click_trial(client, pid, auth):
  while True:
    trial = client.get(f"/api/participants/{pid}/next", headers=auth).json()
    if trial["task"] == "click":
      return trial
    client.post(f"/api/participants/{pid}/responses", json=_answer(trial), headers=auth)


@pytest.mark.parametrize("case", [
    "not_json_type", "malformed", "not_object", "unknown_field", "missing_rt", "bool_index",
    "index_out_of_range", "not_served", "choice_out_of_range", "choice_not_int",
    "clicks_on_choice", "negative_rt", "absurd_rt", "nan_rt", "too_big", "bad_px_per_deg"])
def test_bad_response_is_refused_and_stores_nothing(client, app, case):
  pid, auth = _join(client)
  trial = client.get(f"/api/participants/{pid}/next", headers=auth).json()
  assert trial["task"] == "choice"
  body = _answer(trial)
  url = f"/api/participants/{pid}/responses"
  kwargs = {}
  if case == "not_json_type":
    kwargs = {"content": json.dumps(body), "headers": {**auth, "content-type": "text/plain"}}
  elif case == "malformed":
    kwargs = {"content": b'{"trial_index": 0,', "headers": {**auth, "content-type":
                                                           "application/json"}}
  elif case == "not_object":
    body = [body]
  elif case == "unknown_field":
    body["score"] = 1
  elif case == "missing_rt":
    del body["rt_ms"]
  elif case == "bool_index":
    body["trial_index"] = True
  elif case == "index_out_of_range":
    body["trial_index"] = 10_000
  elif case == "not_served":
    body["trial_index"] = 1
  elif case == "choice_out_of_range":
    body["choice"] = 4
  elif case == "choice_not_int":
    body["choice"] = "0"
  elif case == "clicks_on_choice":
    body["clicks"] = [[1, 1]] * 5
  elif case == "negative_rt":
    body["rt_ms"] = -5
  elif case == "absurd_rt":
    body["rt_ms"] = 1e9
  elif case == "nan_rt":
    kwargs = {"content": b'{"trial_index": 0, "rt_ms": NaN, "choice": 0}',
              "headers": {**auth, "content-type": "application/json"}}
  elif case == "too_big":
    body["pad"] = "x" * 65_536  # a response is < 1 kB; the cap is 16 kB
  elif case == "bad_px_per_deg":
    body["px_per_deg"] = -3
  r = client.post(url, **(kwargs or {"json": body, "headers": auth}))
  assert 400 <= r.status_code < 500, (case, r.status_code, r.text)
  error = r.json()["error"]
  assert error and "\n" not in error and "Traceback" not in error
  expected = {"not_json_type": 415, "malformed": 400, "too_big": 413, "not_served": 409}
  assert r.status_code == expected.get(case, 422), (case, r.status_code, error)
  assert _rows(app) == []


def test_click_validation(client, app):
  pid, auth = _join(client)
  trial = _click_trial(client, pid, auth)
  stored = len(_rows(app))
  url = f"/api/participants/{pid}/responses"
  size = trial["image_size"]
  for clicks in ([[size + 1, 5]] + [[1, 1]] * 4, [[-1, 5]] + [[1, 1]] * 4, [[1, 1]] * 4,
                 [[1, 1, 1]] * 5, "here"):
    body = {"trial_index": trial["trial_index"], "rt_ms": 900, "clicks": clicks}
    r = client.post(url, json=body, headers=auth)
    assert r.status_code == 422, (clicks, r.text)
  r = client.post(url, json={"trial_index": trial["trial_index"], "rt_ms": 900, "choice": 0},
                  headers=auth)
  assert r.status_code == 422
  assert len(_rows(app)) == stored
  good = {"trial_index": trial["trial_index"], "rt_ms": 900, "clicks": [[1.5, size - 1]] * 5}
  assert client.post(url, json=good, headers=auth).status_code == 201


def test_participants_and_tokens(client, app):
  pid, auth = _join(client)
  other, other_auth = _join(client)
  assert client.get(f"/api/participants/{pid}/next").status_code == 401
  assert client.get("/api/participants/nobody/next", headers=auth).status_code == 404
  r = client.get(f"/api/participants/{pid}/next", headers=other_auth)
  assert r.status_code == 403 and "\n" not in r.json()["error"]
  trial = client.get(f"/api/participants/{other}/next", headers=other_auth).json()
  r = client.post(f"/api/participants/{other}/responses", json=_answer(trial), headers=auth)
  assert r.status_code == 403
  assert client.post("/api/participants", json={"prolific_pid": "<script>"}).status_code == 422
  assert client.post("/api/participants", json={"nope": 1}).status_code == 422
  assert client.post("/api/participants", content=b"x",
                     headers={"content-type": "text/plain"}).status_code == 415
  assert _rows(app) == []
  tokens = [p["token_sha256"] for p in app.state.experiment.store.all_participants()]
  assert auth["Authorization"].split()[1] not in tokens  # stored hashed
  assert all(len(t) == 64 for t in tokens)


def test_static_paths_stay_inside(client, workdir):
  assert client.get("/").status_code == 200
  vendor = client.get("/vendor/jspsych.js")
  assert vendor.status_code == (404 if server.missing_packages() else 200)
  ok = client.get("/stimuli/" + design.load_manifest(workdir)["items"]["catch/" + str(
      design.load_manifest(workdir)["design"]["catch_figures"][0])]["stimulus"])
  assert ok.status_code == 200 and ok.headers["content-type"] == "image/png"
  (workdir / "secret.txt").write_text("secret")
  (workdir / design.STIMULI / "link.txt").unlink(missing_ok=True)
  (workdir / design.STIMULI / "link.txt").symlink_to(workdir / "secret.txt")
  try:
    for path in ("/stimuli/../manifest.json", "/stimuli/%2e%2e/manifest.json",
                 "/stimuli/..%2fmanifest.json", "/stimuli/link.txt", "/static/../server.py",
                 "/static/%2e%2e/server.py", "/vendor/..%2fpackage.json",
                 "/vendor/package.json", "/stimuli//etc/passwd"):
      r = client.get(path)
      assert r.status_code == 404, (path, r.status_code)
      assert "secret" not in r.text and "def " not in r.text
  finally:
    (workdir / design.STIMULI / "link.txt").unlink()


def test_security_headers_and_errors(client):
  for path in ("/", "/api/participants/x/next", "/stimuli/nothing.png"):
    r = client.get(path)
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
  assert client.get("/api/participants/x/next").headers["cache-control"] == "no-store"
  r = client.delete("/api/participants")
  assert r.status_code == 405 and "error" in r.json()


def test_server_error_has_no_traceback(client, app, monkeypatch):
  def broken(*args, **kwargs):
    raise RuntimeError("secret internals /path/to/code.py")
  monkeypatch.setattr(app.state.experiment.store, "create_participant", broken)
  r = client.post("/api/participants", json={})
  assert r.status_code == 500
  assert r.json() == {"error": "internal server error"}


def test_export_needs_the_admin_token(client, app, tmp_path, workdir):
  store = app.state.experiment.store
  token = store.ensure_admin_token()
  assert token and store.ensure_admin_token() is None  # printed once only
  pid, auth = _join(client, prolific_pid="exp1")
  trial = client.get(f"/api/participants/{pid}/next", headers=auth).json()
  client.post(f"/api/participants/{pid}/responses", json=_answer(trial), headers=auth)
  assert client.get("/api/export").status_code == 401
  assert client.get("/api/export", headers=auth).status_code == 403
  r = client.get("/api/export", headers={"Authorization": f"Bearer {token}"})
  assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
  lines = r.text.strip().splitlines()
  assert lines[0].split(",") == list(store_lib.EXPORT_COLUMNS) and len(lines) == 2
  assert "exp1" in lines[1] and "choice_practice" in lines[1]
  paths = store_lib.export_files(workdir, store.url, out=tmp_path / "export")
  rows = json.loads(pathlib.Path(paths[1]).read_text())
  assert len(rows) == 1 and rows[0]["representation"] == manifest_rep(workdir)


def manifest_rep(workdir):
  m = design.load_manifest(workdir)
  return m["items"][f"choice_practice/{m['design']['choice_practice_figures'][0]}"][
      "representation"]


def test_click_scoring_uses_pckh_with_free_sides(workdir):
  from triplet_pose.experiment import scoring  # pylint: disable=g-import-not-at-top
  manifest = design.load_manifest(workdir)
  item = next(i for i in manifest["items"].values() if i["task"] == "click")
  points = np.asarray(item["points"])
  assert scoring.click_pckh(item, points.tolist()) == 1.0
  swapped = points[[0, 2, 1, 4, 3]]  # hands and feet named the other way round
  assert scoring.click_pckh(item, swapped.tolist()) == 1.0
  far = points + item["head_size"]  # 1.41 head sizes away
  assert scoring.click_pckh(item, far.tolist()) == 0.0


def test_build_from_predicted_poses(tmp_path_factory, tmp_path):
  """With pose models, the images show their predictions; answers stay true."""
  import tiny_workdirs  # pylint: disable=g-import-not-at-top
  models = tiny_workdirs.trained(tmp_path_factory)
  config = design.experiment_config("quick")
  config.representations, config.num_phosphenes = ("joints",), (1000,)
  config.choice_figures, config.click_block = 2, False
  config.catch_trials, config.practice_trials = 0, 1
  true_set = stimuli.build(config, tmp_path / "true", log=lambda m: None)
  config.joint_workdir = str(models["joint"])
  predicted_set = stimuli.build(config, tmp_path / "predicted", log=lambda m: None)
  assert predicted_set["design"]["pose_source"] == "predicted"
  item = "choice/0/joints/1000"
  assert predicted_set["items"][item]["answer"] == true_set["items"][item]["answer"]
  stimulus = predicted_set["items"][item]["stimulus"]
  shown = [(tmp_path / w / design.STIMULI / stimulus).read_bytes() for w in ("true", "predicted")]
  assert shown[0] != shown[1]  # an untrained model's pose is not the true one
  config.representations = ("triplet",)
  with pytest.raises(ValueError, match="triplet_workdir"):
    stimuli.build(config, tmp_path / "no_contour", log=lambda m: None)
