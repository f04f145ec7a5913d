"""TFDS builder `synthetic_scenes`: several figures per image (no download).

Scenes of 1 to 4 procedural figures (`scenes.py`) with the features of
`scene_features.feature_dict(masks=True)`, deterministic from the config's
seed. Configs:

  default  2000 train / 200 validation, 1-4 figures (built in about a minute)
  small     400 train / 100 validation, 1-4 figures
  tiny       16 train /   8 validation (tests)
  apart    as small without occluders

Any size: `n<train>_<validation>_s<seed>` (e.g. input.name
'synthetic_scenes/n8000_500_s0'), optionally with `_p<min>-<max>` persons
(`synthetic_scenes/n400_100_s0_p2-3`); see `config_from_name`.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import re
from typing import Iterator

import tensorflow_datasets as tfds

from triplet_pose.data import array_record_builder
from triplet_pose.data import scene_features
from triplet_pose.data.synthetic_scenes import scenes

MIN_EXAMPLES_FOR_POOL = 256
SPLIT_STREAMS = {"train": 0, "validation": 1}


class SyntheticScenesConfig(tfds.core.BuilderConfig):
  """Dataset size, seed and what the scenes look like."""

  def __init__(self, *, num_train: int, num_validation: int, seed: int = 0,
               options: scenes.SceneOptions = scenes.SceneOptions(),
               num_workers: int | None = None, **kwargs):
    kwargs.setdefault(
        "description", f"{num_train} train / {num_validation} validation scenes of "
        f"{options.min_persons}-{options.max_persons} figures, seed {seed}.")
    super().__init__(**kwargs)
    self.num_train = num_train
    self.num_validation = num_validation
    self.seed = seed
    self.options = options
    self.num_workers = num_workers


def config_from_name(name: str) -> SyntheticScenesConfig | None:
  """The config named `n<train>_<validation>_s<seed>[_p<min>-<max>]`, or None."""
  match = re.fullmatch(r"n(\d+)_(\d+)_s(\d+)(?:_p(\d+)-(\d+))?", name)
  if match is None:
    return None
  train, validation, seed = map(int, match.groups()[:3])
  options = scenes.SceneOptions()
  if match.group(4):
    low, high = int(match.group(4)), int(match.group(5))
    if not 1 <= low <= high <= 8:
      raise ValueError(f"synthetic_scenes/{name}: persons must be 1 <= min <= max <= 8, "
                       f"got {low}-{high}")
    options = dataclasses.replace(options, min_persons=low, max_persons=high)
  return SyntheticScenesConfig(name=name, num_train=train, num_validation=validation,
                               seed=seed, options=options)


class Builder(array_record_builder.ArrayRecordBuilder):
  """Procedural scenes with exact keypoints, visibility and instance masks."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "1-4 figures, depth order, occluders, visibility with reasons."}
  BUILDER_CONFIGS = [
      SyntheticScenesConfig(name="default", num_train=2000, num_validation=200),
      SyntheticScenesConfig(name="small", num_train=400, num_validation=100),
      SyntheticScenesConfig(name="tiny", num_train=16, num_validation=8),
      SyntheticScenesConfig(name="apart", num_train=400, num_validation=100,
                            options=scenes.SceneOptions(occluders=0.0),
                            description="400/100 scenes of 1-4 figures, no occluders."),
  ]
  DEFAULT_CONFIG_NAME = "default"

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(features=scene_features.feature_dict(masks=True),
                                          supervised_keys=None)

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    c = self.builder_config
    return {"train": self._generate_examples("train", c.num_train),
            "validation": self._generate_examples("validation", c.num_validation)}

  def _generate_examples(self, split: str, num: int) -> Iterator[tuple[int, dict]]:
    c = self.builder_config
    jobs = [(c.seed, SPLIT_STREAMS[split], i, c.options) for i in range(num)]
    workers = c.num_workers if c.num_workers is not None else min(os.cpu_count() or 1, 8)
    if workers <= 1 or num < MIN_EXAMPLES_FOR_POOL:
      yield from map(scenes.encoded_scene, jobs)
      return
    # 'spawn': the parent holds TensorFlow (and maybe JAX) threads.
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
      yield from pool.imap(scenes.encoded_scene, jobs, chunksize=32)
