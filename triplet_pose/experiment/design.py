"""The experiment's design: its config, the manifest, and each participant's trials.

Kept free of JAX (numpy only) so that the server starts in a fraction of a
second and restarts as fast after a crash.

* `experiment_config(size)`: conditions, figures, blocks, exclusions, the
  analysis and the virtual participants (`configs/experiment.py` wraps it).
* `load_manifest(workdir)`: what `stimuli.build` wrote: every item's
  conditions, seeds and answer.
* `schedule(manifest, number)`: the trials of the `number`-th participant,
  counterbalanced (a Latin square over conditions), in that participant's
  order, with practice, catch trials and breaks.

Counterbalancing: a block has F figures and C conditions (F a multiple of
C). Participant `number` is in group g = number mod C and sees figure j in
condition (j + g) mod C: every participant meets every condition F/C times
and every figure exactly once, and every C consecutive participants show
every figure in every condition once. The two main blocks come in either
order (by (number // C) mod 2), so block order is crossed with the groups.
"""

from __future__ import annotations

import functools
import hashlib
import json
import pathlib
from typing import Any

import ml_collections
import numpy as np

SIZES = ("full", "quick")
MANIFEST = "manifest.json"
STIMULI = "stimuli"  # the folder under the workdir that the server exposes
# What a click trial asks for, in click order, and the joints that define it
# (MPII indices; the head is the middle of upper neck and head top).
CLICK_TARGETS = ("head", "right hand", "left hand", "right foot", "left foot")
CLICK_JOINTS = ((8, 9), (10,), (15,), (0,), (5,))
# Pairs of targets a participant cannot tell apart on a phosphene image (the
# figure may face either way): scoring takes the better labelling of each.
CLICK_SWAPS = ((1, 2), (3, 4))


def experiment_config(size: str = "full") -> ml_collections.ConfigDict:
  """The stimulus set, design, exclusion rule, analysis and virtual participants.

  Args:
    size: 'full' (4 representations x 4 phosphene counts, 48 choice and 16
      click trials per participant) or 'quick' (2 x 2, a dozen per block:
      under a minute to build).
  """
  if size not in SIZES:
    raise ValueError(f"size must be one of {SIZES}, got {size!r}")
  c = ml_collections.ConfigDict()
  c.title = "Reading body poses from simulated prosthetic vision"
  # Conditions: the readability registry's names x the benchmark's layouts.
  c.representations = ("joints", "triplet", "silhouette", "image_edges")
  c.num_phosphenes = (100, 300, 1000, 3000)
  # Figures: synthetic figures of streams the pose models and the
  # readability observers never saw (they use streams 0 and 1).
  c.data_seed = 0
  c.figure_stream = 2
  c.pool_stream = 3  # distractor poses
  c.pool_size = 1500
  c.choice_figures = 48  # per participant; a multiple of the conditions
  c.click_figures = 16
  c.catch_trials = 6  # undegraded figure, 4-choice, inside the choice block
  c.practice_trials = 4  # choice, with feedback, before the first block
  c.click_practice_trials = 1  # before the click block, shown the answer
  c.click_block = True
  c.break_every = 24  # trials between breaks
  # Distractors: mean joint distance to the target (and to each other) in
  # torso lengths, labels of left and right free (`readability.choice`).
  c.distractor_distance = (0.5, 1.0)
  # Phosphene images: the readability benchmark's simulator (same layout
  # and thresholds per phosphene count: same seed) at a finer resolution.
  c.seed = 0
  c.simulator_resolution = 256
  c.line_width = 5.0  # mask pixels at 256 px (the demo's)
  c.frames = 10
  c.candidate_size = 160  # px of a candidate stick figure
  c.blindspot_reps = 3  # blind-spot measurements of the calibration (viewing distance)
  # Predicted poses (optional): the pose models' workdirs (`launch.demo`'s
  # joint and triplet folders). The phosphene images then show what the
  # models found on each figure; answers stay the figure's true pose.
  c.joint_workdir = ""
  c.triplet_workdir = ""
  c.practice_representation = ""  # '' -> the first representation
  c.practice_num_phosphenes = 0  # 0 -> the largest count
  # Completion: a study-wide code (online panels give one per study) or,
  # when empty, a random code per participant; `completion_url` (with
  # {code}) redirects there, e.g. https://app.prolific.com/submissions/complete?cc={code}
  c.completion_code = ""
  c.completion_url = ""
  # Fixed before any data come in: a participant whose catch-trial
  # accuracy is below this is excluded from the analysis.
  c.exclusion = ml_collections.ConfigDict(dict(min_catch_accuracy=0.75,
                                               min_rt_ms=150.0))
  c.analysis = ml_collections.ConfigDict(dict(
      bootstrap=1000, seed=0, threshold_accuracy=0.625, max_lapse=0.06,
      pckh_threshold=0.5))
  # The computational observer answering the same trials (0 steps: off).
  c.observer = ml_collections.ConfigDict(dict(steps=0, num_train=1500))
  # Virtual participants (`simulate`): accuracy per condition follows a
  # psychometric function of log10 N with these thresholds (N at
  # `analysis.threshold_accuracy`), slope and lapse rate.
  c.simulate = ml_collections.ConfigDict(dict(
      thresholds=ml_collections.ConfigDict({"joints": 250.0, "triplet": 600.0,
                                            "silhouette": 150.0, "image_edges": 1500.0}),
      slope=3.0, lapse=0.03, catch_accuracy=0.97, careless_fraction=0.1,
      rt_ms=1400.0, click_noise=0.15, seed=0))
  if size == "quick":
    c.representations = ("joints", "silhouette")
    c.num_phosphenes = (100, 1000)
    c.pool_size = 300
    c.choice_figures = 12
    c.click_figures = 12
    c.catch_trials = 2
    c.practice_trials = 2
    c.break_every = 12
    c.blindspot_reps = 2
    c.analysis.bootstrap = 200
    c.simulate.thresholds = ml_collections.ConfigDict({"joints": 250.0, "silhouette": 150.0})
  return c


def condition_id(representation: str, num_phosphenes: int) -> str:
  """'joints/300': a condition's name in the manifest, tables and exports."""
  return f"{representation}/{int(num_phosphenes)}"


def conditions(config: ml_collections.ConfigDict) -> list[tuple[str, int]]:
  """(representation, N) of every main condition, representation-major."""
  return [(r, int(n)) for r in config.representations for n in sorted(config.num_phosphenes)]


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError, naming the field, when the design cannot be balanced."""
  count = len(conditions(config))
  if count == 0:
    raise ValueError("config.representations and config.num_phosphenes must not be empty")
  for field in ("choice_figures",) + (("click_figures",) if config.click_block else ()):
    value = config[field]
    if value <= 0 or value % count:
      raise ValueError(f"config.{field}={value} must be a positive multiple of the "
                       f"{count} conditions (every participant meets each equally often)")
  if config.triplet_workdir and not config.joint_workdir:
    raise ValueError("config.triplet_workdir needs config.joint_workdir")
  lo, hi = config.distractor_distance
  if not 0 < lo < hi:
    raise ValueError(f"config.distractor_distance={tuple(config.distractor_distance)} "
                     "must be (low, high) with 0 < low < high")
  if config.pool_size < 20:
    raise ValueError(f"config.pool_size={config.pool_size} is too small to find distractors")


def fingerprint(config: ml_collections.ConfigDict) -> str:
  """Hash of what the stimuli depend on (not the analysis or simulation fields)."""
  keep = {k: v for k, v in config.to_dict().items()
          if k not in ("analysis", "simulate", "exclusion", "completion_code",
                       "completion_url", "title", "blindspot_reps", "observer")}
  text = json.dumps(keep, sort_keys=True, default=list)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int) -> dict[str, Any]:
  del mtime_ns  # part of the cache key: a rebuilt manifest is read again
  return json.loads(pathlib.Path(path).read_text())


def load_manifest(workdir: str | pathlib.Path) -> dict[str, Any]:
  """The manifest `stimuli.build` wrote in `workdir`.

  Raises:
    FileNotFoundError: naming the build command, when there is none.
  """
  path = pathlib.Path(workdir) / MANIFEST
  if not path.exists():
    raise FileNotFoundError(f"no {MANIFEST} in {workdir}: run "
                            f"`python -m launch.experiment build --workdir={workdir}` first")
  return _load(str(path.absolute()), path.stat().st_mtime_ns)


def _spread(rng: np.random.Generator, trials: list, inserts: list) -> list:
  """`trials` with `inserts` at random positions, none at the very start."""
  out = list(trials)
  for item in inserts:
    out.insert(int(rng.integers(1, len(out) + 1)), item)
  return out


def _main_block(manifest, block: str, group: int, rng) -> list[dict[str, Any]]:
  design = manifest["design"]
  conds = design["conditions"]
  figures = design[f"{block}_figures"]
  trials = [manifest["items"][f"{block}/{figure}/{conds[(j + group) % len(conds)]}"]
            for j, figure in enumerate(figures)]
  order = rng.permutation(len(trials))
  trials = [trials[i] for i in order]
  if block == "choice":
    trials = _spread(rng, trials, [manifest["items"][f"catch/{f}"]
                                   for f in design["catch_figures"]])
  practice = [manifest["items"][f"{block}_practice/{f}"]
              for f in design[f"{block}_practice_figures"]]
  return practice + trials


@functools.lru_cache(maxsize=4096)
def _schedule(manifest_key: str, number: int) -> tuple[dict[str, Any], ...]:
  manifest = _MANIFESTS[manifest_key]
  design = manifest["design"]
  count = len(design["conditions"])
  group = number % count
  rng = np.random.default_rng([design["seed"], number])
  blocks = ["choice"] + (["click"] if design["click_figures"] else [])
  if (number // count) % 2:
    blocks.reverse()
  trials, since_break = [], 0
  for b, block in enumerate(blocks):
    for k, item in enumerate(_main_block(manifest, block, group, rng)):
      since_break += 1
      pause = (k == 0 and b > 0) or (since_break > design["break_every"])
      if pause:
        since_break = 1
      trials.append({"item": item["id"], "block": block, "phase": item["phase"],
                     "block_start": k == 0, "break_before": pause})
  for index, trial in enumerate(trials):
    trial["trial_index"] = index
  return tuple(trials)


_MANIFESTS: dict[str, dict[str, Any]] = {}


def schedule(manifest: dict[str, Any], number: int) -> tuple[dict[str, Any], ...]:
  """The trials of participant `number` (0, 1, ...), in order.

  Returns:
    one dict per trial: 'trial_index', 'item' (the manifest item id),
    'block' ('choice' | 'click'), 'phase' ('practice' | 'main' | 'catch'),
    'block_start' (the first trial of a block: show its instructions) and
    'break_before' (offer a break first). Cached per manifest and number.
  """
  key = manifest["design"]["fingerprint"]
  _MANIFESTS.setdefault(key, manifest)
  return _schedule(key, int(number))


def choice_correct(item: dict[str, Any], choice: int) -> bool:
  """Whether `choice` (an index into the item's choices) is the answer."""
  return int(choice) == int(item["answer"])


def public_trial(manifest: dict[str, Any], trial: dict[str, Any], total: int) -> dict[str, Any]:
  """What `GET .../next` tells the page about a trial (never the answer)."""
  item = manifest["items"][trial["item"]]
  out = {"trial_index": trial["trial_index"], "task": item["task"],
         "stimulus_url": f"/{STIMULI}/{item['stimulus']}",
         "choices": [f"/{STIMULI}/{c}" for c in item["choices"]],
         "block": trial["block"], "practice": trial["phase"] == "practice",
         "block_start": trial["block_start"], "break_before": trial["break_before"],
         "progress": [trial["trial_index"], total], "image_size": item["size"]}
  if item["task"] == "click":
    out["targets"] = list(CLICK_TARGETS)
  return out
