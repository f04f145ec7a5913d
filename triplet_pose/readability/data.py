"""The benchmark's figures and poses: drawn once, cached in the workdir.

The synthetic figures (`data/synthetic_figures/figures.py`) are drawn
directly (no TFDS): the validation split is the demo dataset's (same seed
and stream), so the demo's pose models never saw it. A split keeps the
poses, the head sizes and a grey image at the simulator's resolution (for
`image_edges`); `data.npz` holds both splits, `predictions.npz` the trained
models' poses of the validation figures.
"""

from __future__ import annotations

import json
import pathlib
from typing import Callable, Mapping

import ml_collections
import numpy as np
from PIL import Image

from triplet_pose import storage
from triplet_pose.data.synthetic_figures import figures

SOURCE_SIZE = figures.SIZE  # the figures' side, in pixels: keypoints refer to it.
STREAMS = {"train": 0, "validation": 1}  # as the synthetic_figures builder.
# Keys of predictions.npz holding the checkpoint step of each pose model.
STEP_PREFIX = "step/"


def make_split(config: ml_collections.ConfigDict, split: str, *,
               keep_images: bool = False) -> dict[str, np.ndarray]:
  """Poses and grey images (at the simulator's resolution) of a split.

  Returns:
    {'joints' (N, 16, 2), 'contour' (N, 26, 2), 'head_size' (N,) in source
    pixels, 'image' (N, R, R) uint8 grey}, plus 'full_image' (N, 256, 256, 3)
    with `keep_images` (for the pose models).
  """
  count = config.num_train if split == "train" else config.num_validation
  size = (config.simulator_resolution,) * 2
  arrays = {k: [] for k in ("joints", "contour", "head_size", "image", "full_image")}
  for index in range(count):
    example = figures.make_example(config.data_seed, index, stream=STREAMS[split])
    for key in ("joints", "contour", "head_size"):
      arrays[key].append(example[key])
    grey = Image.fromarray(example["image"]).convert("L").resize(size[::-1], Image.BILINEAR)
    arrays["image"].append(np.asarray(grey))
    if keep_images:
      arrays["full_image"].append(example["image"])
  return {k: np.stack(v) for k, v in arrays.items() if v}


def predict_poses(images: np.ndarray, *, joint_workdir: str,
                  triplet_workdir: str | None) -> dict[str, np.ndarray]:
  """The trained models' joints (and contour points) of (N, S, S, 3) images.

  Returns:
    {'joints': (N, 16, 2)[, 'contour': (N, 26, 2)]} in image pixels, and
    the step of every model run ('step/joint', 'step/triplet' or
    'step/combined').
  """
  # Deferred: the pose models (orbax, TFDS) add 0.5 s (measured) to the ground-truth-only path.
  from triplet_pose import prediction  # pylint: disable=g-import-not-at-top
  predictor = prediction.Predictor(joint_workdir, triplet_workdir, batch_size=16)
  found = predictor.predict(list(images))
  steps = {STEP_PREFIX + role: np.asarray(model.step)
           for role, model in (("joint", predictor.models.joint),
                               ("triplet", predictor.models.triplet),
                               ("combined", predictor.models.combined)) if model is not None}
  return {**{name: np.stack([p.original(name) for p in found]).astype(np.float32)
             for name in predictor.keypoint_names}, **steps}


def cached_npz(path: pathlib.Path, make: Callable[[], Mapping[str, np.ndarray]],
                meta: str) -> dict[str, np.ndarray]:
  """Loads `path` if it was made with `meta`, else makes and writes it."""
  if path.exists():
    with np.load(path) as f:
      if str(f["meta"]) == meta:
        return {k: f[k] for k in f.files if k != "meta"}
  arrays = dict(make())
  with storage.atomic_write(path) as tmp:  # keeps the .npz suffix savez wants
    np.savez(tmp, meta=np.asarray(meta), **arrays)
  return arrays


def load_data(config: ml_collections.ConfigDict, workdir: pathlib.Path, *,
              joint_workdir: str | None = None, triplet_workdir: str | None = None
              ) -> dict[str, dict[str, np.ndarray]]:
  """Train and validation splits, and the predicted validation poses (cached).

  Returns:
    {'train': split, 'validation': split, 'predicted': {set: keypoints} or {},
     'predicted_steps': {'joint'|'triplet'|'combined': checkpoint step} of
     the models that predicted them (empty for predictions cached without),
     'meta': what the data depends on (for caches made from it)}.
  """
  meta = json.dumps({k: config[k] for k in ("num_train", "num_validation", "data_seed",
                                            "simulator_resolution")}, sort_keys=True)
  data = cached_npz(workdir / "data.npz", lambda: {
      f"{split}/{k}": v for split in STREAMS for k, v in make_split(config, split).items()},
                     meta)
  out = {split: {k.split("/", 1)[1]: v for k, v in data.items() if k.startswith(split + "/")}
         for split in STREAMS}
  out["predicted"], out["predicted_steps"] = {}, {}
  if joint_workdir:
    def make():
      images = make_split(config, "validation", keep_images=True)["full_image"]
      return predict_poses(images, joint_workdir=joint_workdir,
                           triplet_workdir=triplet_workdir)
    source = json.dumps([meta, str(joint_workdir), str(triplet_workdir)])
    predicted = cached_npz(workdir / "predictions.npz", make, source)
    out["predicted"] = {k: v for k, v in predicted.items() if not k.startswith(STEP_PREFIX)}
    out["predicted_steps"] = {k[len(STEP_PREFIX):]: int(v) for k, v in predicted.items()
                              if k.startswith(STEP_PREFIX)}
  out["meta"] = json.dumps([meta, str(joint_workdir), str(triplet_workdir)])
  return out


def dataset_info(config: ml_collections.ConfigDict) -> dict[str, object]:
  """The provenance block's dataset entry of the figures `make_split` draws."""
  return {"tfds_name": None, "config": None, "version": None,
          "source": "synthetic figures drawn in process (data/synthetic_figures/figures.py, "
                    "the builder's streams)",
          "seed": int(config.data_seed), "split": "validation",
          "examples": int(config.num_validation), "train_examples": int(config.num_train)}
