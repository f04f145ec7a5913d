"""TFDS builder `mpii_trb`: MPII persons (+ MPII-TRB contour points), one crop each.

Build it with `tfds build triplet_pose/data/mpii_trb --config=joints
--manual_dir=...` or from Python (`tfds.builder('mpii_trb/joints',
data_dir=...).download_and_prepare(download_config=tfds.download.DownloadConfig(
manual_dir=...))`). The manual directory layout is in `layout.INSTRUCTIONS`.

Configs:
  joints           every annotated person, standard MPII crop.
  triplets         the persons of `joints` matched to a TRB person.
  thesis_joints    persons with all 16 joints annotated, thesis crop.
  thesis_triplets  the persons of `thesis_joints` matched to a TRB person.
  multi_person     one example per image with every annotated person of it
                   (`group_crops.py`; the features of `scene_features`).

Bad input never passes silently: a missing manual directory or a file of the
wrong structure stops the build with a message naming the file; a missing
or corrupt image, or a person with non-finite coordinates, is skipped with a
logged line naming the file and the person; every skip is counted, and the
counts are logged at the end of each split and kept in the dataset's
metadata (`info.metadata['skipped']`).
"""

from __future__ import annotations

import collections
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from PIL import Image

from triplet_pose.data import array_record_builder
from triplet_pose.data import scene_features
from triplet_pose.data.mpii_trb import annotations
from triplet_pose.data.mpii_trb import crops
from triplet_pose.data.mpii_trb import features
from triplet_pose.data.mpii_trb import group_crops
from triplet_pose.data.mpii_trb import layout

# Skips logged one by one before switching to a count only (the HDF5
# validation file lists 2958 persons; a partial image folder skips most).
MAX_LOGGED_SKIPS = 50
TRB_MATCH_TOLERANCE = 5.0  # pixels between MPII and TRB person centres


class MpiiTrbConfig(tfds.core.BuilderConfig):
  """A person selection and crop strategy ('group': every person of an image)."""

  def __init__(self, *, crop: str, require_trb: bool, require_all_joints: bool, **kwargs):
    super().__init__(**kwargs)
    self.crop = crop
    self.require_trb = require_trb
    self.require_all_joints = require_all_joints


class SkipLog:
  """Counts skipped persons by reason and logs them (the first ones in full)."""

  def __init__(self, name: str):
    self.name = name
    self.counts = collections.Counter()

  def skip(self, reason: str, detail: str, *, persons: int = 1) -> None:
    total = sum(self.counts.values())
    self.counts[reason] += persons
    if total < MAX_LOGGED_SKIPS:
      logging.warning("%s: skipped (%s) %s", self.name, reason, detail)
    elif total == MAX_LOGGED_SKIPS:
      logging.warning("%s: further skips are counted only (summary at the end)", self.name)

  def summary(self, written: int) -> str:
    parts = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.counts.items()))
    return (f"{self.name}: wrote {written} persons, skipped {sum(self.counts.values())}"
            + (f" ({parts})" if parts else ""))


class Builder(array_record_builder.ArrayRecordBuilder):
  """MPII Human Pose persons with MPII-TRB contour points."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Joints/triplets, MPII and thesis crops."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = layout.INSTRUCTIONS
  BUILDER_CONFIGS = [
      MpiiTrbConfig(name="joints", crop="mpii", require_trb=False, require_all_joints=False,
                    description="Every annotated person; standard MPII crop (200*scale box)."),
      MpiiTrbConfig(name="triplets", crop="mpii", require_trb=True, require_all_joints=False,
                    description="Persons of `joints` matched to an MPII-TRB person."),
      MpiiTrbConfig(name="thesis_joints", crop="thesis", require_trb=False, require_all_joints=True,
                    description="All 16 joints annotated; keypoint box + 50 px, white padding."),
      MpiiTrbConfig(name="thesis_triplets", crop="thesis", require_trb=True,
                    require_all_joints=True,
                    description="Persons of `thesis_joints` matched to an MPII-TRB person."),
      MpiiTrbConfig(name="multi_person", crop="group", require_trb=False,
                    require_all_joints=False,
                    description="One example per image, every annotated person of it."),
  ]
  DEFAULT_CONFIG_NAME = "joints"

  def _info(self) -> tfds.core.DatasetInfo:
    grouped = self.builder_config.crop == "group"
    return self.dataset_info_from_configs(
        features=(scene_features.feature_dict(masks=False) if grouped
                  else features.feature_dict()),
        supervised_keys=None,
        homepage="http://human-pose.mpi-inf.mpg.de/",
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    try:
      manual_dir = dl_manager.manual_dir
    except AssertionError:
      manual_dir = dl_manager._manual_dir  # pylint: disable=protected-access
    data = layout.read_manual_dir(manual_dir)
    everyone = [p for people in data.people.values() for p in people]
    matches, unmatched = annotations.match_trb(everyone, data.trb, tolerance=TRB_MATCH_TOLERANCE)
    for t in unmatched[:MAX_LOGGED_SKIPS]:
      logging.warning("mpii_trb: TRB person %s (%s, centre %s) matches no MPII person",
                      t.source, t.image, np.round(t.center, 1).tolist())
    logging.info("mpii_trb/%s: sources %s; %d of %d TRB persons matched", self.builder_config.name,
                 data.sources, len(data.trb) - len(unmatched), len(data.trb))
    self.info.metadata["sources"] = data.sources
    self.info.metadata["unmatched_trb_persons"] = len(unmatched)
    self.info.metadata["skipped"] = {}
    generators = {}
    for split, people in data.people.items():
      log = SkipLog(f"mpii_trb/{self.builder_config.name} {split}")
      by_image = self._select(people, matches, data.images_dir, log)
      if by_image:
        generators[split] = self._generate_examples(split, by_image, data.images_dir, matches, log)
      else:
        logging.warning("%s; the split is left out", log.summary(0))
        self.info.metadata["skipped"][split] = dict(log.counts)
    if not generators:
      raise ValueError(f"mpii_trb/{self.builder_config.name}: no usable person in any split "
                       f"(skipped: {self.info.metadata['skipped']}); see the log for each one")
    return generators

  def _select(self, people, matches, images_dir, log: SkipLog) -> dict[str, list]:
    """The persons to crop, by image; every other one is logged and counted."""
    by_image, seen = collections.defaultdict(list), set()
    for p in people:
      reason = self._reject(p, matches, seen)
      if reason:
        log.skip(reason, f"{p.image} person {p.person_index} ({p.source})")
      else:
        by_image[p.image].append(p)
        seen.add(p.key)
    for name in sorted(by_image):
      if not (images_dir / name).is_file():
        persons = by_image.pop(name)
        who = ", ".join(f"person {p.person_index} ({p.source})" for p in persons)
        log.skip("missing image", f"{images_dir / name}: {who}", persons=len(persons))
    return dict(sorted(by_image.items()))

  def _generate_examples(self, split, by_image, images_dir, matches,
                         log: SkipLog) -> Iterator[tuple[str, dict]]:
    written = 0
    for name, persons in by_image.items():
      image = _load_image(images_dir / name, persons, log)
      if image is None:
        continue
      if self.builder_config.crop == "group":
        yield name, group_crops.make_example(image, persons, [matches.get(p.key) for p in persons])
        written += len(persons)
        continue
      for p in persons:
        yield p.key, crops.make_example(image, p, matches.get(p.key), crop=self.builder_config.crop)
        written += 1
    logging.warning("%s", log.summary(written))
    self.info.metadata["skipped"][split] = dict(log.counts)
    if not written:
      raise ValueError(f"{log.summary(0)}: no usable person left in this split")

  def _reject(self, p: annotations.Person, matches, seen) -> str | None:
    """Why a person is left out, or None."""
    config = self.builder_config
    if p.key in seen:
      return "duplicate person"
    annotated = p.joints_visible > 0
    finite = (np.all(np.isfinite(p.joints[annotated])) and np.all(np.isfinite(p.center))
              and np.isfinite(p.scale) and np.isfinite(p.head_size))
    if not finite:
      return "non-finite coordinates"
    if p.scale <= 0 or p.head_size <= 0:
      return "non-positive scale or head size"
    if config.require_all_joints and not annotated.all():
      return "not all 16 joints annotated"
    if not annotated.any():
      return "no joint annotated"
    trb = matches.get(p.key)
    if trb is not None and not np.all(np.isfinite(trb.contour[trb.contour_visible > 0])):
      return f"non-finite TRB coordinates ({trb.source})"
    if config.require_trb and trb is None:
      return "no TRB match"
    return None


def _load_image(path, persons, log: SkipLog) -> np.ndarray | None:
  """The RGB image, or None (logged for every person of it) when unreadable."""
  who = ", ".join(f"person {p.person_index} ({p.source})" for p in persons)
  try:
    with Image.open(path) as im:
      return np.asarray(im.convert("RGB"))
  except Exception as e:  # pylint: disable=broad-except  (PIL raises many kinds)
    log.skip("corrupt image", f"{path} ({type(e).__name__}: {e}): {who}", persons=len(persons))
    return None


