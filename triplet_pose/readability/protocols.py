"""The two reading protocols, and the readers and encoders they keep.

* `ideal`: a fresh reader per cell (representation, N, seed), trained on
  that cell's images alone: what a representation carries for a reader who
  co-adapts to it. It is also scored at the other phosphene counts of its
  representation (transfer across N).
* `common`: one reader per seed, trained once on a mix of every drawn
  representation at every N, with plain renderings of the figures (the
  grey image and the unrendered masks), then frozen and scored on each
  representation: what a reader who knows the general look of a phosphene
  person reads. The `learned` encoder is trained against it.

Readers and encoders are kept in the workdir (`readers/`, `encoders/`:
msgpack) so that a re-run resumes without training them again.

* `Grid`: what the steps of a run share; `images(grid, ...)`: a
  condition's images (drawn, or the learned encoder's), recorded with
  their budget and pictoriality; `median_budget`: the drawn
  representations' median, the learned encoder's budget.
* `mix`, `train_common_reader`, `common_reader`: the common reader.
* `load_or_train`: a kept tree, or train it and keep it.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Callable, Sequence

from absl import logging
import jax
import ml_collections
import numpy as np
from flax import serialization

from triplet_pose import storage
from triplet_pose.readability import cells as cells_lib
from triplet_pose.readability import data as data_lib
from triplet_pose.readability import learned as learned_lib
from triplet_pose.readability import observer as observer_lib
from triplet_pose.readability import outputs
from triplet_pose.readability import pictoriality as pictoriality_lib
from triplet_pose.readability import representations as reps

PROTOCOLS = ("ideal", "common")
# Conditions' images held in memory at once (the rest are re-read from disk).
_HELD_CONDITIONS = 8


def mix(images: Sequence[np.ndarray], joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Stacks conditions' (B, S, S) uint8 images of the same B figures, with their joints."""
  stacked = np.concatenate(list(images))
  return stacked, np.tile(joints, (len(images), 1, 1))


def common_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The observer config of the common reader (its own number of steps)."""
  oc = ml_collections.ConfigDict(config.observer.to_dict())
  oc.steps = config.common.steps
  return oc


def train_common_reader(images: np.ndarray, joints: np.ndarray, *,
                        config: ml_collections.ConfigDict, seed: int,
                        log: Callable[[int, float], None] | None = None) -> dict[str, Any]:
  """A reader trained once on the mix (`mix`), to be frozen.

  Args:
    images: (M, S, S) uint8 images of every drawn condition and the plain
      renderings.
    joints: (M, 16, 2) their figures' joints.
    config: `benchmark.benchmark_config()` (`config.common.steps`).
    seed: initialisation and batch order.
    log: log(step, loss).
  """
  return observer_lib.train(images, joints, config=common_config(config), seed=seed,
                            source_size=data_lib.SOURCE_SIZE, log=log)


def reader_path(workdir: str | pathlib.Path, protocol: str, *, seed: int,
                representation: str | None = None, num_phosphenes: int | None = None,
                layout: int = 0) -> pathlib.Path:
  """Where a benchmark run keeps a reader (`common`: one per seed; `ideal`: per cell)."""
  folder = pathlib.Path(workdir) / "readers"
  if protocol == "common":
    return folder / f"common_s{seed}.msgpack"
  if protocol == "ideal":
    return folder / f"ideal_L{layout}_{representation}_{num_phosphenes}_s{seed}.msgpack"
  raise ValueError(f"protocol must be 'ideal' or 'common', got {protocol!r}")


def load_or_train(path: pathlib.Path, train: Callable[[], Any]) -> Any:
  """The tree kept at `path` (msgpack), or `train()`'s, kept there."""
  if path.exists():
    return serialization.msgpack_restore(path.read_bytes())
  tree = jax.tree.map(np.asarray, train())
  path.parent.mkdir(parents=True, exist_ok=True)
  with storage.atomic_write(path) as tmp:
    pathlib.Path(tmp).write_bytes(serialization.msgpack_serialize(tree))
  return tree


@dataclasses.dataclass
class Grid:
  """What the steps of a run share: config, data, workdir and what is kept."""
  config: ml_collections.ConfigDict
  data: dict[str, Any]
  workdir: pathlib.Path
  results: dict[str, Any]
  runs: dict[str, Any]
  images: dict[str, Any] = dataclasses.field(default_factory=dict)  # this run's, by key

  @property
  def drawn(self) -> list[str]:
    """The grid's drawn representations (the common reader's mix, the budget's median)."""
    return [n for n in self.config.representations if reps.get(n).kind == "drawn"]

  def log_step(self, what: str) -> Callable[[int, float], None]:
    return lambda step, loss: logging.info("  %s step %d: loss %.4f", what, step, loss)


def _condition_key(name: str, n: int, layout: int, seed: int | None = None) -> str:
  key = f"L{layout}/{name}/{n}"
  return key if seed is None else f"{key}/s{seed}"


def images(grid: Grid, name: str, n: int, layout: int, seed: int = 0) -> dict[str, Any]:
  """A condition's images and summaries (learned: of the seed's encoder); recorded."""
  rep = reps.get(name)
  key = _condition_key(name, n, layout, seed if rep.kind == "learned" else None)
  if key not in grid.images:
    if len(grid.images) >= _HELD_CONDITIONS:
      grid.images.clear()  # a bound on what is held: images are cached on disk.
    if rep.kind == "learned":
      out = _learned_images(grid, n, layout, seed)
    else:
      out = cells_lib.condition_images(rep, n, grid.data, config=grid.config, layout=layout,
                                       workdir=grid.workdir)
    # Pictoriality: against the figure's silhouette image as this implant
    # shows it (the silhouette's phosphene image at the same N and layout).
    silhouette = (out if name == "silhouette" else images(grid, "silhouette", n, layout))
    record = {"budget": out["budget"], "pictoriality": pictoriality_lib.pictoriality(
        out["validation"], silhouette["validation"])}
    if "predicted" in out:  # how much a wrong pose changes the image
      record["ssim_predicted"] = pictoriality_lib.pictoriality(
          out["predicted"], out["validation"])["ssim"]
    grid.results.setdefault("conditions", {})[key] = record
    if layout == grid.config.layouts[0] and seed == grid.config.seeds[0]:
      _save_example(grid, rep, n, out["validation"])
    grid.images[key] = out
  return grid.images[key]


def _save_example(grid: Grid, rep, n: int, seen) -> None:
  index = grid.config.example_index
  if rep.kind == "learned":
    mask = learned_lib.pose_heatmaps(
        cells_lib.keypoints(grid.data["validation"])[index][None],
        source_size=cells_lib.SOURCE_SIZE, size=grid.config.observer.image_size,
        sigma=grid.config.learned.sigma)[0].max(-1)
  else:
    mask = cells_lib.masks(rep, grid.data, config=grid.config,
                           workdir=grid.workdir)["validation"][index]
  outputs.save_example(grid.workdir, rep.name, n, image=np.asarray(seen[index]),
                       mask=np.asarray(mask))


def median_budget(grid: Grid, n: int, layout: int) -> dict[str, float]:
  """The drawn representations' median active electrodes and charge per frame at N."""
  budgets = [images(grid, name, n, layout)["budget"] for name in grid.drawn]
  return {k: float(np.median([b[k] for b in budgets])) for k in budgets[0]}


def common_reader(grid: Grid, seed: int) -> dict[str, Any]:
  """The frozen common reader of a seed (trained on the first layout's mix)."""
  c = grid.config

  def train():
    layout = c.layouts[0]
    logging.info("[readability] common reader, seed %d: %d drawn conditions + plain", seed,
                 len(grid.drawn) * len(c.num_phosphenes))
    conditions = [images(grid, name, n, layout)["train"] for name in grid.drawn
                  for n in c.num_phosphenes]
    plain = cells_lib.plain_images(grid.data, grid.drawn, config=c, workdir=grid.workdir)
    mixed, joints = mix(conditions + plain, grid.data["train"]["joints"])
    del conditions, plain
    return train_common_reader(mixed, joints, config=c, seed=seed,
                                         log=grid.log_step("common reader"))
  return load_or_train(reader_path(grid.workdir, "common", seed=seed), train)


def learned_limits(grid: Grid, n: int, layout: int) -> dict[str, Any]:
  budget = median_budget(grid, n, layout)
  return learned_lib.budget_limits(grid.config.learned, charge=budget["charge_per_frame"],
                                   electrodes=budget["active_electrodes"])


def _learned_images(grid: Grid, n: int, layout: int, seed: int) -> dict[str, Any]:
  """The learned stimulation's images: the seed's encoder, trained if need be (cached)."""
  c = grid.config
  limits = learned_limits(grid, n, layout)
  sim = cells_lib.simulator(n, config=c, layout=layout, surrogate=True)
  splits = cells_lib.splits_of(reps.get("learned"), grid.data)

  def train():
    logging.info("[readability] learned encoder: %d phosphenes, layout %d, seed %d, budget %s",
                 n, layout, seed, limits)
    return learned_lib.train_encoder(
        sim, common_reader(grid, seed), cells_lib.keypoints(splits["train"]),
        splits["train"]["joints"], config=c.learned, observer_config=c.observer,
        limits=limits, frames=c.frames, source_size=cells_lib.SOURCE_SIZE, seed=seed,
        log=grid.log_step("encoder"))["params"]

  def make():
    params = load_or_train(
        grid.workdir / "encoders" / f"L{layout}_{n}_s{seed}.msgpack", train)
    out = {}
    for split, values in splits.items():
      rendered = learned_lib.encode(sim, params, cells_lib.keypoints(values), config=c.learned,
                                    image_size=c.observer.image_size, limits=limits,
                                    frames=c.frames, source_size=cells_lib.SOURCE_SIZE)
      out[split] = rendered["images"]
      if split == "validation":
        out["active"], out["charge"] = rendered["active"], rendered["charge"]
    return out
  path = grid.workdir / "images" / f"L{layout}" / f"learned_{n}_s{seed}.npz"
  path.parent.mkdir(parents=True, exist_ok=True)
  arrays = data_lib.cached_npz(path, make, json.dumps([grid.data.get("meta"), limits]))
  return cells_lib.with_budget(arrays)
