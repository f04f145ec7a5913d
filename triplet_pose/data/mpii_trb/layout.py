"""The manual directory of `mpii_trb`: what goes where, and which files are used.

Users own the MPII images and annotations (and the MPII-TRB contour
annotations); nobody can download them by code. This module finds them in
the manual directory and says exactly what is missing when they are not
there.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from absl import logging

from triplet_pose.data.mpii_trb import annotations

MAT_FILE = "mpii_human_pose_v1_u12_1.mat"
JSON_FILES = {"train": "mpii_train.json", "validation": "mpii_val.json"}
HDF5_FILES = {"train": "train.h5", "validation": "valid.h5"}
TRB_FILES = ("mpii_trb_train.json", "mpii_trb_val.json")
IMAGES_DIR = "images"

INSTRUCTIONS = f"""\
Put the MPII Human Pose files (and, optionally, the MPII-TRB contour
annotations) in the manual directory (`--manual_dir`, or
`<data_dir>/downloads/manual/` by default), laid out as:

  MANUAL_DIR/{IMAGES_DIR}/*.jpg
      the MPII images: `mpii_human_pose_v1.tar.gz` from
      http://human-pose.mpi-inf.mpg.de/ (Download), extracted, its `images/`
      folder placed (or symlinked) here.
  MANUAL_DIR/ the MPII annotations, ANY ONE of (first found wins, per split):
      {HDF5_FILES['train']}, {HDF5_FILES['validation']}
          stacked-hourglass HDF5 (imgname, part, visible, center, scale,
          normalize); {HDF5_FILES['validation']} is the standard 2958-person
          validation split.
      {JSON_FILES['train']}, {JSON_FILES['validation']}
          toolbox JSON (list of {{image, joints, joints_vis, center, scale}}).
      {MAT_FILE}
          the official release (`mpii_human_pose_v1_u12_2.zip` on the same
          page). It has no validation split: about 10% of its training
          images (crc32(name) % 10 == 0) become `validation`.
  MANUAL_DIR/{TRB_FILES[0]}, MANUAL_DIR/{TRB_FILES[1]}   (optional)
      MPII-TRB contour annotations, COCO style with 40 named keypoints
      (https://github.com/kennymckormick/Triplet-Representation-of-human-Body).
      Needed by the `triplets` and `thesis_triplets` configs.

Images listed in the validation annotations are never used for training.
Then run: python -m triplet_pose.data.mpii_trb --config=joints --manual_dir=MANUAL_DIR
(or: tfds build triplet_pose/data/mpii_trb --config=joints --manual_dir=MANUAL_DIR)
"""


@dataclasses.dataclass
class ManualData:
  """Everything read from a manual directory."""
  images_dir: Path
  people: dict[str, list[annotations.Person]]  # split -> persons
  trb: list[annotations.TrbPerson]
  sources: dict[str, str]  # split (and 'trb') -> file(s) used


def _missing(manual_dir: Path, what: str) -> FileNotFoundError:
  return FileNotFoundError(
      f"mpii_trb: {what} in the manual directory {manual_dir}.\n\n{INSTRUCTIONS}")


def read_manual_dir(manual_dir: str | Path) -> ManualData:
  """Finds and reads the annotation files of a manual directory.

  Raises:
    FileNotFoundError: no directory, no `images/`, or no MPII annotations;
      the message says exactly what to put where.
    annotations.AnnotationError: a file of the wrong structure or shape.
  """
  manual_dir = Path(manual_dir).expanduser()
  if not manual_dir.is_dir():
    raise _missing(manual_dir, "the directory does not exist")
  images_dir = manual_dir / IMAGES_DIR
  if not images_dir.is_dir():
    raise _missing(manual_dir, f"there is no '{IMAGES_DIR}/' folder of MPII images")
  people, sources = {}, {}
  mat = manual_dir / MAT_FILE
  mat_people = None
  for split in ("validation", "train"):  # validation first: train excludes its images
    h5, js = manual_dir / HDF5_FILES[split], manual_dir / JSON_FILES[split]
    if h5.is_file():
      people[split], sources[split] = annotations.read_hdf5(h5, split=split), h5.name
    elif js.is_file():
      people[split], sources[split] = annotations.read_toolbox_json(js, split=split), js.name
    elif mat.is_file():
      if mat_people is None:
        mat_people = annotations.read_mat(mat)
      validation_has_file = ("validation" in people
                             and not sources["validation"].startswith(MAT_FILE))
      if split == "train" and validation_has_file:
        # Validation comes from its own file: train on every .mat person
        # (those in validation images are removed below).
        people[split] = [dataclasses.replace(p, split="train") for p in mat_people]
        sources[split] = mat.name
      else:
        people[split] = [p for p in mat_people if p.split == split]
        sources[split] = f"{mat.name} ({split} part)"
  if not people:
    raise _missing(manual_dir, "there are no MPII annotation files "
                   f"({MAT_FILE}, {'/'.join(JSON_FILES.values())} or "
                   f"{'/'.join(HDF5_FILES.values())})")
  if "train" in people and "validation" in people:
    held_out = {p.image for p in people["validation"]}
    before = len(people["train"])
    people["train"] = [p for p in people["train"] if p.image not in held_out]
    if before != len(people["train"]):
      logging.info("mpii_trb: %d training persons are in validation images; not used for train",
                   before - len(people["train"]))
  trb = []
  trb_files = [manual_dir / f for f in TRB_FILES if (manual_dir / f).is_file()]
  for f in trb_files:
    trb.extend(annotations.read_trb_json(f))
  sources["trb"] = ", ".join(f.name for f in trb_files) or "none"
  return ManualData(images_dir=images_dir, people=people, trb=trb, sources=sources)

