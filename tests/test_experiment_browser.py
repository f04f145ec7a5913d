"""A person's path through the page, in a real headless Chromium (selenium).

Debian's chromium and chromedriver (`.ci/run` installs them); under CI=true
a missing browser, driver or selenium fails instead of skipping. The test
takes one participant through consent, instructions, the virtual-chinrest
calibration, practice with feedback, both blocks, breaks and the end page,
reloads the page in the middle (it must come back at the same trial), kills
the server while an answer is being posted (the page must say it is
retrying, and get through once the server is back), and checks that the
database then holds exactly what was clicked.

With TRIPLET_POSE_EXPERIMENT_SCREENSHOT=path it also saves a screenshot of
the first main choice trial (docs/experiment_trial.png is one).
"""

from __future__ import annotations

import json
import os
import time

import pytest

import peers
from triplet_pose.experiment import design
from triplet_pose.experiment import participants
from triplet_pose.experiment import server as server_lib
from triplet_pose.experiment import stimuli
from triplet_pose.experiment import store as store_lib

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
webdriver = peers.require("selenium.webdriver", why="the browser test of the experiment page")
reason = None
if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
  reason = f"needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)"
elif server_lib.missing_packages():
  reason = f"needs the page's jsPsych packages: {server_lib.missing_packages()}"
if reason:
  if peers.in_ci():
    pytest.fail(f"CI=true but the browser test {reason}", pytrace=False)
  pytest.skip(reason, allow_module_level=True)

from selenium.common.exceptions import StaleElementReferenceException  # pylint: disable=g-import-not-at-top,wrong-import-position
from selenium.webdriver.chrome.options import Options  # pylint: disable=g-import-not-at-top,wrong-import-position
from selenium.webdriver.chrome.service import Service  # pylint: disable=g-import-not-at-top,wrong-import-position
from selenium.webdriver.common.action_chains import ActionChains  # pylint: disable=g-import-not-at-top,wrong-import-position
from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top,wrong-import-position
from selenium.webdriver.support.ui import WebDriverWait  # pylint: disable=g-import-not-at-top,wrong-import-position

TIMEOUT = 20


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  path = tmp_path_factory.getbasetemp() / "experiment_quick"
  if not (path / design.MANIFEST).exists():
    stimuli.build(design.experiment_config("quick"), path, log=lambda m: None)
  return path


@pytest.fixture
def browser(tmp_path):
  home = tmp_path / "home"
  home.mkdir()
  for var in ("HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
    os.environ[var] = str(home)
  options = Options()
  options.binary_location = CHROMIUM
  for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
              "--window-size=1280,1150", f"--user-data-dir={home / 'profile'}"):
    options.add_argument(arg)
  options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
  driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
  yield driver
  driver.quit()


def _screen(driver) -> str:
  """Which screen the page shows."""
  checks = (("end", "#completion-code"), ("choice", "button.candidate"),
            ("click", "#click-image"), ("resize", "#end_resize_phase"),
            ("blindspot", "#virtual-chinrest-circle"), ("report", "#redo_blindspot"),
            ("buttons", "#jspsych-html-button-response-btngroup button"))
  for name, selector in checks:
    if driver.find_elements(By.CSS_SELECTOR, selector):
      return name
  return "loading"


def _wait_screen(driver, *, not_element=None) -> str:
  """Waits until the page shows a screen (other than the one `not_element` was on)."""
  def ready(d):
    if not_element is not None:
      try:
        not_element.is_displayed()
        return False
      except StaleElementReferenceException:
        pass
    return _screen(d) != "loading"
  WebDriverWait(driver, TIMEOUT).until(ready)
  return _screen(driver)


def _trial_index(driver) -> int:
  text = driver.find_element(By.CSS_SELECTOR, ".progress").text  # "(k of n)"
  return int(text.strip("()").split(" of ")[0]) - 1


def _space(driver):
  ActionChains(driver).send_keys(" ").perform()


def test_participant_path_with_reload(workdir, browser, tmp_path):
  db = tmp_path / "browser.sqlite"
  server = participants.ServerProcess(workdir, database_url=f"sqlite:///{db}",
                                      log_path=tmp_path / "server.log").start()
  expected: dict[int, dict] = {}  # trial index -> what was clicked
  screens, reloaded_at, banners = [], None, []
  try:
    browser.get(server.url + "/?PROLIFIC_PID=pp123&STUDY_ID=st1&SESSION_ID=se1")
    screen = _wait_screen(browser)
    for _ in range(200):
      screens.append(screen)
      if screen == "end":
        break
      if screen == "buttons":
        button = browser.find_elements(By.CSS_SELECTOR,
                                       "#jspsych-html-button-response-btngroup button")[0]
        element = button
        button.click()
      elif screen == "resize":
        element = browser.find_element(By.ID, "end_resize_phase")
        element.click()
      elif screen == "blindspot":
        element = None  # the ball stays for the next measurement
        _space(browser)  # the ball starts
        time.sleep(1.5)  # ~180 px at 2 px per frame: a plausible blind spot
        _space(browser)  # where it vanished
        time.sleep(0.2)
      elif screen == "report":
        element = browser.find_element(By.ID, "proceed")
        element.click()
      else:
        index = _trial_index(browser)
        main_trials = [k for k in expected if k >= 3]
        if reloaded_at is None and len(main_trials) >= 4:
          reloaded_at = index  # reload before answering: the same trial must return
          browser.refresh()
          screen = _wait_screen(browser)
          while screen == "buttons":  # e.g. "practice is over"
            b = browser.find_elements(By.CSS_SELECTOR,
                                      "#jspsych-html-button-response-btngroup button")[0]
            b.click()
            screen = _wait_screen(browser, not_element=b)
          assert screen in ("choice", "click")
          assert _trial_index(browser) == reloaded_at
          continue
        if screen == "choice":
          if index == 3 and os.environ.get("TRIPLET_POSE_EXPERIMENT_SCREENSHOT"):
            browser.save_screenshot(os.environ["TRIPLET_POSE_EXPERIMENT_SCREENSHOT"])
          choice = index % 4
          element = browser.find_elements(By.CSS_SELECTOR, "button.candidate")[choice]
          outage = reloaded_at is not None and not banners and index > reloaded_at
          if outage:
            server.kill()  # the answer's post meets a dead server
          element.click()
          expected[index] = {"choice": choice}
          if outage:
            status = browser.find_element(By.ID, "status")
            WebDriverWait(browser, TIMEOUT).until(lambda d: "Retrying" in status.text)
            banners.append(status.text)
            server.start()  # the page's next retry gets through
            WebDriverWait(browser, TIMEOUT).until(lambda d: not status.is_displayed())
        else:
          image = browser.find_element(By.ID, "click-image")
          width = image.size["width"]
          natural = browser.execute_script("return arguments[0].naturalWidth", image)
          offsets = [(-60 + 25 * k, -40 + 20 * k + index) for k in range(5)]
          for dx, dy in offsets:  # Selenium offsets are from the centre
            ActionChains(browser).move_to_element_with_offset(image, dx, dy).click().perform()
          element = image
          expected[index] = {"clicks": [[(dx + width / 2) * natural / width,
                                         (dy + width / 2) * natural / width]
                                        for dx, dy in offsets]}
      screen = _wait_screen(browser, not_element=element)
    assert screen == "end", screens[-10:]
    code = browser.find_element(By.ID, "completion-code").text
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    refused = [e for e in severe if "ERR_CONNECTION_REFUSED" in e["message"]]
    assert refused  # the outage's failed posts, and nothing else
    assert len(refused) == len(severe), severe
  finally:
    server.stop()
  assert reloaded_at is not None
  assert banners and "attempt" in banners[0], banners  # the outage was shown on screen
  for step in ("buttons", "resize", "blindspot", "choice", "click", "end"):
    assert step in screens

  store = store_lib.Store(f"sqlite:///{db}")
  try:
    people = store.all_participants()
    rows = store.all_responses()
  finally:
    store.close()
  assert len(people) == 1
  person = people[0]
  assert (person["prolific_pid"], person["study_id"], person["session_id"]) == (
      "pp123", "st1", "se1")
  assert person["completion_code"] == code and person["completed_at"] is not None
  total = len(design.schedule(design.load_manifest(workdir), person["number"] - 1))
  assert sorted(expected) == list(range(total))
  assert [r["trial_index"] for r in rows] == list(range(total))  # exactly once each
  for r in rows:
    want = expected[r["trial_index"]]
    if "choice" in want:
      assert r["choice"] == want["choice"] and r["clicks"] is None
    else:
      got = json.loads(r["clicks"])
      assert r["choice"] is None and len(got) == 5
      for (gx, gy), (wx, wy) in zip(got, want["clicks"]):
        assert abs(gx - wx) < 1.5 and abs(gy - wy) < 1.5, (got, want["clicks"])
    assert 0 < r["rt_ms"] < 60_000
    assert 5 < r["px_per_deg"] < 200  # the calibration reached every post
