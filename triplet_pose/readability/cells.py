"""The images a reader sees, and one reader's scores.

A condition is (representation, phosphene count, electrode layout). Its
phosphene images are made once and kept in the workdir as uint8
(`images/L<layout>/<name>_<N>.npz`): masks are drawn chunk by chunk into
uint8 (`representations.draw_uint8`), simulated chunk by chunk, and never
held whole in float. With them are each test figure's active electrodes and
charge per frame (the implant budget).
The simulator of a phosphene count and layout seed is the same for every
representation (dynaphos' default parameters, magnification layout, random
thresholds from the layout seed).

* `masks`: a drawn representation's uint8 masks per split (cached).
* `condition_images`: a drawn condition's images and budget.
* `plain_images`: undegraded renderings (the figure's grey image and the
  unrendered masks, pooled): part of the common reader's mix.
* `train_reader` / `score`: an observer, and its per-figure PCKh.
* `chance`: PCKh of always answering the mean pose.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Callable, Mapping

import jax.numpy as jnp
import ml_collections
import numpy as np

from triplet_pose import metrics
from triplet_pose import phosphenes
from triplet_pose.readability import data as data_lib
from triplet_pose.readability import observer as observer_lib
from triplet_pose.readability import representations as reps
from triplet_pose.readability import stats

SOURCE_SIZE = data_lib.SOURCE_SIZE
SPLITS = ("train", "validation", "predicted")


def chance(data) -> dict[str, float]:
  """PCKh of always answering the training figures' mean pose (fractions)."""
  mean = np.mean(data["train"]["joints"], axis=0)
  val = data["validation"]
  visible = np.ones(val["joints"].shape[:2], np.float32)
  return metrics.pckh(np.broadcast_to(mean, val["joints"].shape), val["joints"], visible,
                      val["head_size"])


def predicted_split(representation: reps.Representation, data) -> dict[str, np.ndarray] | None:
  """The validation split with the models' keypoints, if they predict what it shows."""
  predicted = data.get("predicted") or {}
  if representation.uses_pose and all(k in predicted for k in representation.keypoint_sets):
    return {**data["validation"], **predicted}
  return None


def splits_of(representation: reps.Representation, data) -> dict[str, dict[str, np.ndarray]]:
  """'train', 'validation' and, when the models predict what it shows, 'predicted'."""
  out = {"train": data["train"], "validation": data["validation"]}
  predicted = predicted_split(representation, data)
  if predicted is not None:
    out["predicted"] = predicted
  return out


def keypoints(split: Mapping[str, np.ndarray]) -> np.ndarray:
  """(N, 42, 2) joints then contour points: what the learned encoder reads."""
  return np.concatenate([split["joints"], split["contour"]], axis=1)


def _resolution(config) -> tuple[int, int]:
  return (config.simulator_resolution,) * 2


def masks(representation: reps.Representation, data, *, config: ml_collections.ConfigDict,
          workdir: pathlib.Path) -> dict[str, np.ndarray]:
  """uint8 masks per split, kept in `workdir/masks/<name>.npz`.

  Drawing costs about as much as reading; kept on disk, a re-run resumes
  cheaply. The 1/255 steps are far below what the electrodes resolve.
  """
  meta = json.dumps([data.get("meta"), config.simulator_resolution, config.line_width])
  path = workdir / "masks" / f"{representation.name}.npz"
  path.parent.mkdir(parents=True, exist_ok=True)
  return data_lib.cached_npz(path, lambda: {
      k: reps.draw_uint8(representation, v, image_size=(SOURCE_SIZE,) * 2,
                         output_size=_resolution(config), line_width=config.line_width)
      for k, v in splits_of(representation, data).items()}, meta)


def simulator(num_phosphenes: int, *, config, layout: int,
              surrogate: bool = False) -> phosphenes.Simulator:
  """The simulator of a phosphene count and layout seed (the same for every representation)."""
  options = phosphenes.Options(threshold_gradient="sigmoid" if surrogate else "none")
  return reps.build_simulator(num_phosphenes, seed=layout, resolution=config.simulator_resolution,
                              options=options)


def factor(config) -> int:
  """Pooling from the simulator's resolution to the observer's images."""
  return config.simulator_resolution // config.observer.image_size


def pooled_uint8(images: np.ndarray, pool: int, batch_size: int = 256) -> np.ndarray:
  """(B, H, W) uint8 -> (B, H/pool, W/pool) uint8, average-pooled, chunk by chunk."""
  out = [reps.to_uint8(reps.pool(jnp.asarray(images[i:i + batch_size], jnp.float32) / 255,
                                 pool)) for i in range(0, len(images), batch_size)]
  return np.concatenate(out)


def plain_images(data, names, *, config, workdir: pathlib.Path, split: str = "train"
                 ) -> list[np.ndarray]:
  """Undegraded renderings of a split: the grey figure image, and each drawn mask, pooled."""
  out = [pooled_uint8(data[split]["image"], factor(config))]
  for name in names:
    out.append(pooled_uint8(masks(reps.get(name), data, config=config,
                                  workdir=workdir)[split], factor(config)))
  return out


def budget_summary(rendered: Mapping[str, np.ndarray]) -> dict[str, float]:
  """Mean active electrodes and charge per frame over the figures of one split."""
  return {"active_electrodes": float(np.mean(rendered["active"])),
          "charge_per_frame": float(np.mean(rendered["charge"]))}


def condition_images(representation: reps.Representation, num_phosphenes: int, data, *,
                     config, layout: int, workdir: pathlib.Path,
                     budget: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """A drawn (or image) condition's phosphene images, cached as uint8.

  Args:
    representation: a drawn or image representation.
    num_phosphenes: phosphenes of the simulator.
    data: `data.load_data`'s result.
    config: `benchmark.benchmark_config()`.
    layout: the electrode-layout seed.
    workdir: the cache's folder.
    budget: {'charge', 'electrodes'} caps (`representations.apply_budget`):
      the validation images within that budget (a separate cache).

  Returns:
    {'<split>': (B, S, S) uint8 images, 'budget': {'active_electrodes',
    'charge_per_frame'} of the validation figures}.
  """
  tag = "" if budget is None else "_budget"
  path = workdir / "images" / f"L{layout}" / f"{representation.name}_{num_phosphenes}{tag}.npz"
  path.parent.mkdir(parents=True, exist_ok=True)
  meta = json.dumps([data.get("meta"), config.simulator_resolution, config.line_width,
                     config.frames, config.observer.image_size, budget])

  def make():
    sim = simulator(num_phosphenes, config=config, layout=layout)
    drawn = masks(representation, data, config=config, workdir=workdir)
    wanted = ("validation",) if budget is not None else tuple(drawn)
    out = {}
    for split in wanted:
      rendered = reps.render_masks(sim, drawn[split], frames=config.frames,
                                   factor=factor(config), **(budget or {}))
      out[split] = rendered["images"]
      if split == "validation":
        out["active"], out["charge"] = rendered["active"], rendered["charge"]
    return out
  return with_budget(data_lib.cached_npz(path, make, meta))


def with_budget(arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
  """The images of each split, and the budget of the validation split."""
  out = {k: v for k, v in arrays.items() if k in SPLITS}
  out["budget"] = budget_summary(arrays)
  return out


def train_reader(images: np.ndarray, joints: np.ndarray, *, config, seed: int,
                 log: Callable[[int, float], None] | None = None) -> dict[str, Any]:
  """A fresh observer trained on uint8 phosphene images (the `ideal` protocol's)."""
  return observer_lib.train(images, joints, config=config.observer, seed=seed,
                            source_size=SOURCE_SIZE, log=log)


def read(reader: dict[str, Any], images: np.ndarray, *, config) -> np.ndarray:
  """The joints a reader finds on uint8 images: (B, 16, 2) source pixels."""
  return observer_lib.predict(reader, images, config=config.observer,
                              source_size=SOURCE_SIZE)[0]


def score(reader: dict[str, Any], images: np.ndarray, split: Mapping[str, np.ndarray], *,
          config) -> list[float]:
  """Per-figure PCKh (fractions) of a reader on a split's images."""
  joints = read(reader, images, config=config)
  return [round(float(v), 5) for v in stats.per_figure_pckh(joints, split["joints"],
                                                             split["head_size"])]
