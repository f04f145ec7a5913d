"""The stimulus set: phosphene images, candidate stick figures and the manifest.

`build(config, workdir)` draws held-out synthetic figures
(`data/synthetic_figures`), renders each in every condition with the
readability benchmark's representations and simulator
(`readability.representations`: the same electrode layout and thresholds
per phosphene count, from the same seed), draws the candidate poses of the
choice trials, and writes `workdir/manifest.json` (every item's conditions,
seeds and answer) and `workdir/stimuli/`.

* Choice items: a phosphene image and 4 candidates: the figure's own pose
  and 3 distractors from a pool of poses, each `config.distractor_distance`
  from the target and from each other (`readability.choice.pose_distance`).
  The candidates of a figure are the same in every condition, so difficulty
  does not depend on the representation, and chance is 25%.
* Click items: a phosphene image; the answer is the 5 target points
  (`design.CLICK_TARGETS`) and the head size, in stimulus pixels.
* Catch items: the undegraded figure with its 4 candidates.
* Practice items: choice items in one easy condition, and click items on
  the undegraded figure.

With `config.joint_workdir` (and `triplet_workdir`) the phosphene images
are drawn from the pose models' predictions on each figure (the real
pipeline); the answers stay the figure's true pose.

Deterministic given the config; resumable: files already written are kept
(a build with another config refuses the workdir).
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Callable

import ml_collections
import numpy as np
from PIL import Image, ImageDraw

from triplet_pose import keypoints as kp
from triplet_pose import phosphenes
from triplet_pose import storage
from triplet_pose.data.synthetic_figures import figures
from triplet_pose.experiment import design
from triplet_pose.experiment import observer_answers
from triplet_pose.readability import choice as choice_lib
from triplet_pose.readability import data as data_lib
from triplet_pose.readability import representations as reps

SOURCE_SIZE = figures.SIZE
NUM_CHOICES = 4
_BUILD = "build.json"


def _figure_ranges(config) -> dict[str, list[int]]:
  """Disjoint figure indices of each use: no participant sees a figure twice."""
  counts = {"choice": config.choice_figures,
            "click": config.click_figures if config.click_block else 0,
            "catch": config.catch_trials, "choice_practice": config.practice_trials,
            "click_practice": config.click_practice_trials if config.click_block else 0}
  out, start = {}, 0
  for name, count in counts.items():
    out[name] = list(range(start, start + count))
    start += count
  return out


def pose_pool(config) -> np.ndarray:
  """(P, 16, 2) poses the distractors are drawn from (their own stream)."""
  return np.stack([figures.sample_pose(np.random.default_rng(
      [config.data_seed, config.pool_stream, i]))["joints"] for i in range(config.pool_size)])


def pick_distractors(target: np.ndarray, pool: np.ndarray, *, band: tuple[float, float],
                     rng: np.random.Generator, count: int = NUM_CHOICES - 1) -> np.ndarray:
  """Indices of `count` pool poses within `band` of the target and of each other.

  Raises:
    ValueError: when the pool has too few (widen the band or grow the pool).
  """
  lo, hi = band
  d = choice_lib.pose_distance(target[None], pool)
  eligible = np.flatnonzero((d >= lo) & (d <= hi))
  chosen: list[int] = []
  for i in rng.permutation(eligible):
    if all(choice_lib.pose_distance(pool[i], pool[j]) >= lo for j in chosen):
      chosen.append(int(i))
      if len(chosen) == count:
        return np.asarray(chosen)
  raise ValueError(f"only {len(chosen)} of {count} distractors found within "
                   f"distractor_distance={tuple(band)} of a target among {len(pool)} "
                   "pool poses: widen the band or raise config.pool_size")


def draw_stick_figure(joints: np.ndarray, *, size: int, scale: float) -> Image.Image:
  """A plain stick figure: one grey, no left/right colours, head as a circle.

  Args:
    joints: (16, 2) pose in any units; drawn normalised (`choice.normalise`).
    size: side of the square image in pixels.
    scale: pixels per torso length (one value for every candidate, so size
      says nothing).
  """
  factor = 4  # drawn large and reduced: smooth lines without antialiasing support
  big = size * factor
  points = choice_lib.normalise(joints) * scale * factor + big / 2
  image = Image.new("L", (big, big), 255)
  pen = ImageDraw.Draw(image)
  width = max(1, round(big / 36))
  for a, b in kp.JOINTS.edges:
    if {a, b} != {8, 9}:
      pen.line([tuple(points[a]), tuple(points[b])], fill=40, width=width)
      for p in (points[a], points[b]):
        r = width / 2
        pen.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=40)
  neck, top = points[8], points[9]
  centre, radius = (neck + top) / 2, np.linalg.norm(top - neck) / 2
  pen.ellipse([centre[0] - radius, centre[1] - radius, centre[0] + radius,
               centre[1] + radius], outline=40, width=width)
  return image.resize((size, size), Image.LANCZOS)


def _save_png(path: pathlib.Path, image: Image.Image) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  with storage.atomic_write(path) as tmp:
    image.save(tmp, format="PNG", optimize=False)


def _click_answer(example, size: int) -> tuple[list[list[float]], float]:
  """The 5 targets and the head size in pixels of a `size`-pixel stimulus."""
  s = size / SOURCE_SIZE
  points = [np.mean([example["joints"][j] for j in group], axis=0) * s
            for group in design.CLICK_JOINTS]
  return [[round(float(x), 3), round(float(y), 3)] for x, y in points], float(
      example["head_size"]) * s


def _cond_dir(condition: str) -> str:
  rep, n = condition.split("/")
  return f"{rep}_n{n}"


def _plan(config, examples, pool, log) -> tuple[dict[str, Any], dict[str, Any]]:
  """Every item (no pixels yet), and the candidate poses of each figure."""
  ranges = _figure_ranges(config)
  res = config.simulator_resolution
  band = tuple(config.distractor_distance)
  conds = [design.condition_id(r, n) for r, n in design.conditions(config)]
  practice_cond = design.condition_id(
      config.practice_representation or config.representations[0],
      config.practice_num_phosphenes or max(config.num_phosphenes))
  items, candidates = {}, {}
  for use in ("choice", "catch", "choice_practice"):
    for f in ranges[use]:
      seed = [config.seed, config.figure_stream, f]
      rng = np.random.default_rng(seed)
      chosen = pick_distractors(examples[f]["joints"], pool, band=band, rng=rng)
      answer = int(rng.integers(NUM_CHOICES))
      poses = [pool[i] for i in chosen]
      poses.insert(answer, examples[f]["joints"])
      candidates[f] = np.stack(poses)
      common = {"task": "choice", "figure": f, "seed": seed, "answer": answer,
                "size": SOURCE_SIZE if use == "catch" else res,
                "distractors": [int(i) for i in chosen],
                "choices": [f"candidates/f{f:04d}_{k}.png" for k in range(NUM_CHOICES)]}
      if use == "catch":
        items[f"catch/{f}"] = {**common, "phase": "catch", "block": "choice",
                               "condition": "catch", "representation": "undegraded",
                               "num_phosphenes": 0, "stimulus": f"figures/f{f:04d}.png"}
        continue
      for cond in (conds if use == "choice" else [practice_cond]):
        key = f"{use}/{f}" if use.endswith("practice") else f"choice/{f}/{cond}"
        rep, n = cond.split("/")
        items[key] = {**common, "phase": "practice" if use.endswith("practice") else "main",
                      "block": "choice", "condition": cond, "representation": rep,
                      "num_phosphenes": int(n),
                      "stimulus": f"choice/{_cond_dir(cond)}/f{f:04d}.png"}
  for use in ("click", "click_practice"):
    for f in ranges[use]:
      size = SOURCE_SIZE if use == "click_practice" else res
      points, head = _click_answer(examples[f], size)
      common = {"task": "click", "figure": f, "seed": [config.seed, config.figure_stream, f],
                "answer": None, "choices": [], "points": points, "head_size": head,
                "size": size}
      if use == "click_practice":
        items[f"click_practice/{f}"] = {
            **common, "phase": "practice", "block": "click", "condition": "undegraded",
            "representation": "undegraded", "num_phosphenes": 0,
            "stimulus": f"figures/f{f:04d}.png"}
        continue
      for cond in conds:
        rep, n = cond.split("/")
        items[f"click/{f}/{cond}"] = {
            **common, "phase": "main", "block": "click", "condition": cond,
            "representation": rep, "num_phosphenes": int(n),
            "stimulus": f"click/{_cond_dir(cond)}/f{f:04d}.png"}
  for key, item in items.items():
    item["id"] = key
  log(f"planned {len(items)} items over {len(conds)} conditions")
  design_info = {
      "fingerprint": design.fingerprint(config), "seed": int(config.seed),
      "conditions": conds, "practice_condition": practice_cond,
      "choice_figures": ranges["choice"], "click_figures": ranges["click"],
      "catch_figures": ranges["catch"], "choice_practice_figures": ranges["choice_practice"],
      "click_practice_figures": ranges["click_practice"],
      "break_every": int(config.break_every), "stimulus_size": int(res),
      "source_size": SOURCE_SIZE, "candidate_size": int(config.candidate_size),
      "view_angle_deg": float(phosphenes.default_params()["run"]["view_angle"]),
      "click_targets": list(design.CLICK_TARGETS), "num_choices": NUM_CHOICES,
      "pose_source": "predicted" if config.joint_workdir else "true"}
  return {"design": design_info, "items": items}, candidates


def shown_poses(config, examples) -> list[dict[str, np.ndarray]]:
  """The pose each figure's phosphene images are drawn from: true, or predicted.

  Raises:
    ValueError: a representation needs contour points and no triplet model
      was given.
  """
  if not config.joint_workdir:
    return examples
  predicted = data_lib.predict_poses(np.stack([e["image"] for e in examples]),
                                     joint_workdir=config.joint_workdir,
                                     triplet_workdir=config.triplet_workdir or None)
  for name in config.representations:
    missing = set(reps.get(name).keypoint_sets) - set(predicted)
    if missing:
      raise ValueError(f"representation {name!r} shows {sorted(missing)}, which the given "
                       "models do not predict: give config.triplet_workdir too")
  return [{**e, **{k: predicted[k][i] for k in ("joints", "contour") if k in predicted}}
          for i, e in enumerate(examples)]


def _render_conditions(config, manifest, examples, out: pathlib.Path, log) -> None:
  """Phosphene images of every item that still lacks one, condition by condition.

  `examples`: per figure, the pose to draw (`shown_poses`) and the image.
  """
  res = config.simulator_resolution
  by_cond: dict[str, list[dict[str, Any]]] = {}
  for item in manifest["items"].values():
    if item["num_phosphenes"] and not (out / item["stimulus"]).exists():
      by_cond.setdefault(item["condition"], []).append(item)
  for cond, todo in sorted(by_cond.items()):
    rep_name, n = cond.split("/")
    rep = reps.get(rep_name)
    if rep.kind == "learned":
      raise ValueError("the learned representation needs a trained encoder; "
                       "it cannot be shown to people from the registry alone")
    batch = {k: np.stack([examples[i["figure"]][k] for i in todo])
             for k in ("joints", "contour", "image")}
    masks = reps.draw(rep, batch, image_size=(SOURCE_SIZE,) * 2, output_size=(res, res),
                      line_width=config.line_width)
    sim = reps.build_simulator(int(n), seed=config.seed, resolution=res)
    images = reps.phosphene_images(sim, masks, frames=config.frames, factor=1)
    for item, image in zip(todo, images):
      pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
      _save_png(out / item["stimulus"], Image.fromarray(pixels, "L"))
    log(f"{cond}: {len(todo)} phosphene images")


def build(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
          log: Callable[[str], None] = print, images: bool = True) -> dict[str, Any]:
  """Builds (or completes) the stimulus set and manifest in `workdir`.

  `images=False` writes the manifest alone (tests of the design and the
  analysis, which never look at a pixel).

  Returns:
    the manifest (also written to `workdir/manifest.json`).

  Raises:
    ValueError: for a design that cannot be balanced, an unknown or learned
      representation, or a workdir built with another config.
  """
  design.check_config(config)
  for name in config.representations:
    reps.get(name)
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  stamp = {"fingerprint": design.fingerprint(config)}
  if (workdir / _BUILD).exists():
    previous = json.loads((workdir / _BUILD).read_text())
    if previous != stamp:
      raise ValueError(f"{workdir} holds a stimulus set built with another config "
                       f"({previous.get('fingerprint')} != {stamp['fingerprint']}); "
                       "use a new --workdir")
  else:
    storage.write_text(workdir / _BUILD, json.dumps(stamp))
  ranges = _figure_ranges(config)
  total = sum(len(v) for v in ranges.values())
  examples = [figures.make_example(config.data_seed, i, stream=config.figure_stream)
              for i in range(total)]
  pool = pose_pool(config)
  manifest, candidates = _plan(config, examples, pool, log)
  manifest = {"version": 1, "config": json.loads(config.to_json()), **manifest}
  out = workdir / design.STIMULI
  if not images:
    storage.write_text(workdir / design.MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
    return manifest
  every = np.concatenate(list(candidates.values()))
  reach = np.abs(choice_lib.normalise(every)).max()
  scale = 0.45 * config.candidate_size / reach
  for f, poses in candidates.items():
    for k, pose in enumerate(poses):
      path = out / f"candidates/f{f:04d}_{k}.png"
      if not path.exists():
        _save_png(path, draw_stick_figure(pose, size=config.candidate_size, scale=scale))
  # Undegraded figures: catch and click-practice stimuli, and the practice
  # figures (the instructions show one beside its phosphenes).
  shown = {item["stimulus"]: item["figure"] for item in manifest["items"].values()
           if not item["num_phosphenes"]}
  shown.update({f"figures/f{f:04d}.png": f for f in ranges["choice_practice"]})
  for name, f in shown.items():
    if not (out / name).exists():
      _save_png(out / name, Image.fromarray(examples[f]["image"]))
  todo = [i for i in manifest["items"].values()
          if i["num_phosphenes"] and not (out / i["stimulus"]).exists()]
  if todo:
    _render_conditions(config, manifest, shown_poses(config, examples), out, log)
  observer_answers.add_to_manifest(config, manifest, workdir, pool=pool, log=log)
  storage.write_text(workdir / design.MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
  log(f"manifest: {workdir / design.MANIFEST} ({len(manifest['items'])} items)")
  return manifest
