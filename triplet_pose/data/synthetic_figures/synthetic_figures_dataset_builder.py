"""TFDS builder `synthetic_figures`: the embedded default dataset (no download).

Procedural articulated figures (see `figures.py`) with the same features as
`mpii_trb`, deterministic from the config's seed. Configs differ in size:

  default  4000 train / 400 validation (built in about a minute on 2 CPUs)
  easy     as default without background clutter, distractors or occluders
  small     500 train / 100 validation
  tiny       32 train /  16 validation (tests)

Any size: the config name `n<train>_<validation>_s<seed>` (e.g. input.name
'synthetic_figures/n20000_1000_s0'; see `config_from_name`), or from Python
`Builder(config=SyntheticFiguresConfig(name=..., num_train=..., ...))`.
"""

from __future__ import annotations

import multiprocessing
import os
import re
from typing import Iterator

import tensorflow_datasets as tfds

from triplet_pose.data import array_record_builder
from triplet_pose.data.mpii_trb import features
from triplet_pose.data.synthetic_figures import figures

# Below this many examples a split is drawn in-process (a pool costs ~2 s).
MIN_EXAMPLES_FOR_POOL = 256
SPLIT_STREAMS = {"train": 0, "validation": 1}


class SyntheticFiguresConfig(tfds.core.BuilderConfig):
  """Dataset size and seed."""

  def __init__(self, *, num_train: int, num_validation: int, seed: int = 0,
               clutter: float = 1.0, num_workers: int | None = None, **kwargs):
    kwargs.setdefault(
        "description", f"{num_train} train / {num_validation} validation figures, seed {seed}.")
    super().__init__(**kwargs)
    self.num_train = num_train
    self.num_validation = num_validation
    self.seed = seed
    self.clutter = clutter
    self.num_workers = num_workers


def config_from_name(name: str) -> SyntheticFiguresConfig | None:
  """The config named `n<train>_<validation>_s<seed>`, or None for other names."""
  match = re.fullmatch(r"n(\d+)_(\d+)_s(\d+)", name)
  if match is None:
    return None
  train, validation, seed = map(int, match.groups())
  return SyntheticFiguresConfig(name=name, num_train=train, num_validation=validation, seed=seed)


class Builder(array_record_builder.ArrayRecordBuilder):
  """Procedural figures with exact joints and contour points."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Figures with textured clothes, clutter and self-occlusion."}
  BUILDER_CONFIGS = [
      SyntheticFiguresConfig(name="default", num_train=4000, num_validation=400),
      SyntheticFiguresConfig(name="easy", num_train=4000, num_validation=400, clutter=0.0,
                             description="4000/400 figures on plain textured backgrounds."),
      SyntheticFiguresConfig(name="small", num_train=500, num_validation=100),
      SyntheticFiguresConfig(name="tiny", num_train=32, num_validation=16),
  ]
  DEFAULT_CONFIG_NAME = "default"

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(features=features.feature_dict(), supervised_keys=None)

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    c = self.builder_config
    return {"train": self._generate_examples("train", c.num_train),
            "validation": self._generate_examples("validation", c.num_validation)}

  def _generate_examples(self, split: str, num: int) -> Iterator[tuple[int, dict]]:
    c = self.builder_config
    jobs = [(c.seed, SPLIT_STREAMS[split], i, c.clutter) for i in range(num)]
    workers = c.num_workers if c.num_workers is not None else min(os.cpu_count() or 1, 8)
    if workers <= 1 or num < MIN_EXAMPLES_FOR_POOL:
      yield from map(figures.encoded_example, jobs)
      return
    # 'spawn': the parent holds TensorFlow (and maybe JAX) threads, which a
    # fork would copy in an undefined state.
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
      yield from pool.imap(figures.encoded_example, jobs, chunksize=32)
