"""Batches of images with several people: `synthetic_scenes` and `mpii_trb/multi_person`.

The same deterministic, resumable iterator as single-person data
(`pipeline.BatchIterator`: random access, one integer of state, decoding in
background threads); only what one example is differs. Persons are padded
to `input.max_persons` (the nearest/first ones kept when an image has more)
so that jitted steps see static shapes, and `persons_valid` marks the real
ones.

Batch keys: image uint8 (B, H, W, 3); joints (B, P, 16, 2); joints_visible
(B, P, 16); joints_occlusion (B, P, 16) int32 (-1 unknown); contour
(B, P, 26, 2); contour_visible (B, P, 26); head_size (B, P); boxes
(B, P, 4); persons_valid (B, P) bool; num_persons (B,) int32 (before
padding, so a truncated image is seen); crowd_index (B,);
crop_to_original (B, 2, 3); image_name; valid (B,).
"""

from __future__ import annotations

import io
from typing import Any

import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from triplet_pose import transforms
from triplet_pose.data import pipeline
from triplet_pose.data.mpii_trb import mpii_trb_dataset_builder  # pylint: disable=unused-import
from triplet_pose.data.synthetic_scenes import synthetic_scenes_dataset_builder as ssb

PERSON_DTYPES = {"joints": np.float32, "joints_visible": np.float32,
                 "joints_occlusion": np.int32, "contour": np.float32,
                 "contour_visible": np.float32, "head_size": np.float32, "boxes": np.float32}
IMAGE_DTYPES = {"image": np.uint8, "crowd_index": np.float32, "crop_to_original": np.float32,
                "num_persons": np.int32, "persons_valid": bool}
DTYPES = {**PERSON_DTYPES, **IMAGE_DTYPES}
MULTI_PERSON_MPII = "mpii_trb/multi_person"


def is_scene_dataset(name: str) -> bool:
  """Whether `input.name` names a dataset of several people per image."""
  return name.split("/")[0] == "synthetic_scenes" or name == MULTI_PERSON_MPII


def _builder(input_config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  name = input_config.name
  if name == MULTI_PERSON_MPII:
    return pipeline._builder(input_config)  # pylint: disable=protected-access  (MPII's manual dir)
  custom = ssb.config_from_name(name.split("/", 1)[1]) if "/" in name else None
  data_dir = input_config.data_dir or None
  builder = (ssb.Builder(config=custom, data_dir=data_dir) if custom is not None
             else tfds.builder(name, data_dir=data_dir))
  if not builder.is_prepared():
    builder.download_and_prepare()
  return builder


def decode_scene(record: dict, *, image_size: int, max_persons: int) -> dict[str, Any]:
  """One stored image -> one example: decoded, resized, persons padded."""
  image = np.asarray(Image.open(io.BytesIO(record["image"])).convert("RGB"))
  count = int(np.asarray(record["joints"]).shape[0])
  keep = min(count, max_persons)
  example = {"image": image, "num_persons": np.int32(count),
             "crowd_index": np.float32(record["crowd_index"]),
             "crop_to_original": np.asarray(record["crop_to_original"], np.float32),
             "image_name": record["image_name"]}
  for key, dtype in PERSON_DTYPES.items():
    value = np.asarray(record[key])[:keep].astype(dtype)
    padded = np.full((max_persons, *value.shape[1:]), -1 if key == "joints_occlusion" else 0,
                     dtype)
    padded[:keep] = value
    example[key] = padded
  example["persons_valid"] = np.arange(max_persons) < keep
  if image.shape[0] != image_size or image.shape[1] != image_size:
    example = _resize(example, image_size)
  return example


def _resize(example: dict, size: int) -> dict:
  """Resizes the square image; keypoints, boxes and normalisers follow."""
  factor = size / example["image"].shape[0]
  resize = transforms.scale_translate_affine(np.full(2, factor), np.full(2, 0.5 * factor - 0.5))
  example = dict(example)
  example["image"] = np.asarray(Image.fromarray(example["image"]).resize(
      (size, size), Image.Resampling.BILINEAR, reducing_gap=2.0))
  for key, visible in (("joints", "joints_visible"), ("contour", "contour_visible")):
    moved = transforms.apply_affine(resize, example[key].astype(np.float64))
    example[key] = np.where(example[visible][..., None] > 0, moved, 0).astype(np.float32)
  corners = example["boxes"].reshape(-1, 2, 2).astype(np.float64)
  example["boxes"] = transforms.apply_affine(resize, corners).reshape(-1, 4).astype(np.float32)
  example["head_size"] = (example["head_size"] * factor).astype(np.float32)
  example["crop_to_original"] = transforms.compose_affines(
      example["crop_to_original"].astype(np.float64),
      transforms.invert_affine(resize)).astype(np.float32)
  return example


class SceneBatchIterator(pipeline.BatchIterator):
  """`pipeline.BatchIterator` whose examples are images with several people."""

  def __init__(self, source, *, max_persons: int, **kwargs):
    super().__init__(source, **kwargs)
    self._max_persons = max_persons

  def _decode(self, indices: list[int]) -> list[dict]:
    records = self._source.__getitems__(indices)
    return list(self._pool.map(
        lambda r: decode_scene(r, image_size=self._image_size, max_persons=self._max_persons),
        records))

  def _load(self, position: int) -> dict[str, np.ndarray]:
    indices, valid = self.batch_indices(position)
    examples = self._examples([int(i) for i in indices])
    batch = {k: np.stack([e[k] for e in examples]).astype(DTYPES[k], copy=False) for k in DTYPES}
    batch["image_name"] = np.array([e["image_name"] for e in examples], dtype=object)
    batch["valid"] = valid
    return batch


def tfds_source(input_config: ml_collections.ConfigDict, split: str):
  """The random-access source of a split's scenes, images still encoded
  (as `pipeline.tfds_source`).

  Raises:
    ValueError: an unknown split.
  """
  builder = _builder(input_config)
  if split not in builder.info.splits:
    raise ValueError(f"{input_config.name} has no split {split!r} "
                     f"(has {list(builder.info.splits)})")
  return builder.as_data_source(split, decoders={"image": tfds.decode.SkipDecoding()})


def create_scene_iterator(input_config: ml_collections.ConfigDict, *, split: str,
                          batch_size: int, seed: int, shuffle: bool, repeat: bool,
                          process_index: int = 0, process_count: int = 1) -> SceneBatchIterator:
  """Batches of this process's share of a split (arguments as
  `pipeline.create_tfds_iterator`; `input_config.max_persons` pads persons).

  Raises:
    ValueError: an unknown split.
  """
  source = tfds_source(input_config, split)
  return SceneBatchIterator(
      source, max_persons=input_config.get("max_persons", 4), batch_size=batch_size, seed=seed,
      shuffle=shuffle, repeat=repeat, process_index=process_index,
      process_count=process_count, image_size=input_config.get("image_size", 256),
      num_threads=input_config.get("num_threads", 2),
      cache_mb=input_config.get("cache_decoded_mb", 0),
      prefetch=input_config.get("prefetch_batches", 2), name=f"{input_config.name}:{split}")

