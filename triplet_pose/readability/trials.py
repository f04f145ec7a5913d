"""The benchmark's readers answering the human experiment's trials.

The experiment (`triplet_pose/experiment`) shows people phosphene images
from its manifest; a choice trial offers 4 candidate poses. The readers of
a finished benchmark run answer the same trials: a reader reads the joints
on the trial's phosphene image, and the shared choice rule
(`choice.choose`: the candidate nearest to what was read, position, size
and left/right labels free) turns them into an answer, exactly as an
observer's answer is scored beside a participant's.

Readers (kept by `launch.readability` in its workdir):

* `common`: the frozen common reader of a seed answers every condition,
  and the catch trials' undegraded figures (it was trained on plain
  renderings too);
* `ideal`: the reader trained on the trial's own condition (representation
  and phosphene count, first layout); a condition outside the benchmark's
  grid has none.

A stimulus is read at the readers' resolution: the experiment's phosphene
images (the same simulator, seed and field of view, rendered finer) are
average-pooled to `observer.image_size`.

* `load_reader`: a kept reader (`protocols.reader_path`).
* `prepare_image`: a stimulus (any size, grey or RGB) -> the readers' input.
* `answer_items`: answers of one reader to a list of choice items.
* `answer_manifest`: every available reader's answers to a manifest.
"""

from __future__ import annotations

import pathlib
from typing import Any, Callable, Iterable, Mapping

import numpy as np
from flax import serialization
from PIL import Image

from triplet_pose.readability import cells as cells_lib
from triplet_pose.readability import choice
from triplet_pose.readability import protocols


def load_reader(path: pathlib.Path) -> dict[str, Any] | None:
  """A kept reader, or None when the benchmark did not make it."""
  return serialization.msgpack_restore(path.read_bytes()) if path.exists() else None


def prepare_image(image: np.ndarray, size: int) -> np.ndarray:
  """(H, W) or (H, W, 3) uint8 -> (size, size) uint8 grey, area-averaged."""
  picture = Image.fromarray(np.asarray(image, np.uint8))
  return np.asarray(picture.convert("L").resize((size, size), Image.BOX))


def answer_items(reader: Mapping[str, Any], images: np.ndarray, candidates: np.ndarray, *,
                 config) -> dict[str, np.ndarray]:
  """One reader's answers to choice trials.

  Args:
    reader: a kept reader (`load_reader`).
    images: (T, S, S) uint8 stimuli at the readers' size (`prepare_image`).
    candidates: (T, C, 16, 2) candidate poses of each trial (any units).
    config: the benchmark's config (`results['config']` or
      `benchmark_config()`): the observer's architecture.

  Returns:
    {'read': (T, 16, 2) joints in the figures' source pixels, 'choice': (T,)
    index of the chosen candidate (`choice.choose`)}.
  """
  read = cells_lib.read(dict(reader), np.asarray(images, np.uint8), config=config)
  return {"read": read, "choice": choice.choose(read, candidates)}


def answer_manifest(items: Iterable[Mapping[str, Any]], *, load_image: Callable[[str], np.ndarray],
                    candidates: Callable[[Mapping[str, Any]], np.ndarray],
                    benchmark_workdir: str | pathlib.Path, config,
                    seeds: Iterable[int] = (0,)) -> list[dict[str, Any]]:
  """Every available reader's answers to the manifest's choice items.

  Args:
    items: the manifest's items (`manifest['items'].values()`); only
      choice items (`task == 'choice'`) are answered.
    load_image: stimulus path (the item's 'stimulus') -> uint8 image.
    candidates: item -> (C, 16, 2) its candidate poses (the experiment
      knows them: the figure's pose and the distractors from its pool).
    benchmark_workdir: a finished `launch.readability` run.
    config: that run's config (`benchmark_config(...)`).
    seeds: reader seeds to answer with.

  Returns:
    one row per (reader, item): {'observer': 'common/s0' or 'ideal/s0',
    'item', 'condition', 'choice', 'answer', 'correct'}; conditions with
    no reader of a protocol are left out.
  """
  chosen = [item for item in items if item.get("task") == "choice"]
  size = config.observer.image_size
  images = {item["id"]: prepare_image(load_image(item["stimulus"]), size) for item in chosen}
  rows = []
  for seed in seeds:
    groups: dict[tuple[str, pathlib.Path], list[Mapping[str, Any]]] = {}
    for item in chosen:
      common = protocols.reader_path(benchmark_workdir, "common", seed=seed)
      groups.setdefault(("common", common), []).append(item)
      if item.get("num_phosphenes"):
        ideal = protocols.reader_path(benchmark_workdir, "ideal", seed=seed,
                            representation=item["representation"],
                            num_phosphenes=item["num_phosphenes"])
        groups.setdefault(("ideal", ideal), []).append(item)
    for (protocol, path), group in groups.items():
      reader = load_reader(path)
      if reader is None:
        continue
      out = answer_items(reader, np.stack([images[i["id"]] for i in group]),
                         np.stack([candidates(i) for i in group]), config=config)
      for item, picked in zip(group, out["choice"]):
        rows.append({"observer": f"{protocol}/s{seed}", "item": item["id"],
                     "condition": item.get("condition"), "choice": int(picked),
                     "answer": item.get("answer"),
                     "correct": item.get("answer") is not None
                     and int(picked) == int(item["answer"])})
  return rows
