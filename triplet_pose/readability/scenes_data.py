"""The scenes of the readability benchmark: several people, drawn once, cached.

The scenes are `synthetic_scenes`' (`data/synthetic_scenes/scenes.py`),
drawn directly (no TFDS) from the same seed and streams, so the
validation split is the scenes dataset's held-out split (the scenes demo's
models never saw it). A split keeps every person's keypoints padded to
`max_persons` (nearest first, `persons_valid` marks the real ones, as scene
batches do), the reasons joints are hidden, the head sizes, the depth
order, the crowd index, a grey image and the visible bodies (the instance
map: which person is seen at each pixel, occluders cut out), both at the
simulator's resolution. `scenes/data.npz` holds both splits.

* `load_scenes`: both splits (cached).
* `scoring_batch`: a split as the scene batch `MultiPersonAp.update` reads.
* `true_persons`: the ground-truth persons as predictions (the known answer).
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import ml_collections
import numpy as np
from PIL import Image

from triplet_pose.data import scene_features as sf
from triplet_pose.data.synthetic_scenes import scenes as scenes_lib
from triplet_pose.data.synthetic_scenes import synthetic_scenes_dataset_builder as ssb
from triplet_pose.readability import data as data_lib

SOURCE_SIZE = sf.SIZE  # the scenes' side: keypoints refer to it.
STREAMS = ssb.SPLIT_STREAMS  # as the synthetic_scenes builder.
PERSON_KEYS = ("joints", "joints_visible", "joints_occlusion", "contour", "contour_visible",
               "head_size", "depth")


def _options(config: ml_collections.ConfigDict) -> scenes_lib.SceneOptions:
  return scenes_lib.SceneOptions(min_persons=config.min_persons,
                                 max_persons=config.max_persons)


def _pooled(image: np.ndarray, size: int) -> np.ndarray:
  """(S, S) uint8 -> (size, size) uint8, area-averaged."""
  return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BOX))


def make_split(config: ml_collections.ConfigDict, split: str) -> dict[str, np.ndarray]:
  """Persons (padded to `config.max_persons`) and images of a split's scenes.

  Returns:
    {'joints' (B, P, 16, 2), 'joints_visible' (B, P, 16),
    'joints_occlusion' (B, P, 16) (-1 for padding), 'contour' (B, P, 26, 2),
    'contour_visible' (B, P, 26), 'head_size' (B, P), 'depth' (B, P),
    'persons_valid' (B, P) bool, 'num_persons' (B,), 'crowd_index' (B,),
    'image' (B, R, R) uint8 grey, 'bodies' (B, R, R) uint8 (255 where a
    person is seen)}, R the simulator's resolution.
  """
  count = config.num_train if split == "train" else config.num_validation
  p, size = config.max_persons, config.simulator_resolution
  out: dict[str, list[Any]] = {k: [] for k in (*PERSON_KEYS, "persons_valid", "num_persons",
                                               "crowd_index", "image", "bodies")}
  for index in range(count):
    scene = scenes_lib.make_scene(config.data_seed, index, stream=STREAMS[split],
                                  options=_options(config))
    real = len(scene["joints"])
    for key in PERSON_KEYS:
      value = np.asarray(scene[key])[:p]
      padded = np.full((p, *value.shape[1:]), -1 if key == "joints_occlusion" else 0,
                       value.dtype)
      padded[:len(value)] = value
      out[key].append(padded)
    out["persons_valid"].append(np.arange(p) < real)
    out["num_persons"].append(real)
    out["crowd_index"].append(scene["crowd_index"])
    out["image"].append(_pooled(np.asarray(Image.fromarray(scene["image"]).convert("L")), size))
    seen = (scene["instance_map"][..., 0] > 0).astype(np.uint8) * 255
    out["bodies"].append(_pooled(seen, size))
  return {k: np.stack(v) for k, v in out.items()}


def load_scenes(config: ml_collections.ConfigDict, workdir: pathlib.Path
                ) -> dict[str, Any]:
  """Train and validation splits (cached in `workdir/scenes/data.npz`).

  Returns:
    {'train': split, 'validation': split, 'meta': what they depend on}.
  """
  meta = json.dumps({k: config[k] for k in ("num_train", "num_validation", "data_seed",
                                            "simulator_resolution", "min_persons",
                                            "max_persons")}, sort_keys=True)
  path = workdir / "scenes" / "data.npz"
  path.parent.mkdir(parents=True, exist_ok=True)
  arrays = data_lib.cached_npz(path, lambda: {
      f"{split}/{k}": v for split in STREAMS for k, v in make_split(config, split).items()},
                               meta)
  out: dict[str, Any] = {split: {k.split("/", 1)[1]: v for k, v in arrays.items()
                                 if k.startswith(split + "/")} for split in STREAMS}
  out["meta"] = meta
  return out


def scoring_batch(split: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The split as one scene batch (`scene_pipeline`'s keys) in source pixels."""
  count = len(split["joints"])
  return {**{k: split[k] for k in ("joints", "joints_visible", "joints_occlusion",
                                   "head_size", "persons_valid", "num_persons",
                                   "crowd_index")},
          "crop_to_original": np.tile(np.eye(2, 3, dtype=np.float32), (count, 1, 1)),
          "valid": np.ones(count, bool)}


def true_persons(split: dict[str, np.ndarray]) -> list[np.ndarray]:
  """Each scene's real persons as predictions (P, 16, 3): x, y and score 1,
  NaN where a joint is not annotated (out of frame)."""
  out = []
  for joints, visible, real in zip(split["joints"], split["joints_visible"],
                                   split["persons_valid"]):
    xy = np.where(visible[..., None] > 0, joints, np.nan)[real]
    out.append(np.concatenate([xy, np.where(visible[real] > 0, 1.0, np.nan)[..., None]], -1))
  return out


def dataset_info(config: ml_collections.ConfigDict) -> dict[str, object]:
  """The provenance block's dataset entry of the scenes `make_split` draws."""
  return {"tfds_name": None, "config": None, "version": None,
          "source": "synthetic scenes drawn in process (data/synthetic_scenes/scenes.py, "
                    "the builder's streams)",
          "seed": int(config.data_seed), "split": "validation",
          "examples": int(config.num_validation), "train_examples": int(config.num_train)}
