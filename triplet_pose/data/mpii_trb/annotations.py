"""Readers of the MPII and MPII-TRB annotation files, and the TRB matching.

MPII annotations come in three common forms; all are read into the same
`Person` records:

* the official release `mpii_human_pose_v1_u12_1.mat` (MATLAB struct
  `RELEASE`; training images only, head boxes for the PCKh normaliser);
* the toolbox JSON (`mpii_train.json`, `mpii_val.json`: a list of
  `{image, joints[16][2], joints_vis[16], center[2], scale}`);
* the stacked-hourglass HDF5 (`train.h5`, `valid.h5`: `imgname, part,
  visible, center, scale, normalize, person`), whose `valid.h5` defines the
  standard 2958-person validation split.

Conventions applied here, once:

* MPII (and TRB, which copies MPII's joints) use MATLAB 1-based pixel
  coordinates; every reader subtracts 1 so that coordinates are the
  project's 0-based pixel centres.
* `center` and `scale` are MPII's raw person centre and scale (person height
  / 200). The HDF5 files store them already adjusted for cropping
  (`center_y + 15 * scale`, `scale * 1.25`, as in Newell et al.); the reader
  undoes that so that all sources agree.
* `head_size` (PCKh normaliser, original pixels): 0.6 x the head box
  diagonal from the .mat; `normalize` from the HDF5; for the JSON, which has
  neither, 25 x raw scale, which is exactly what the HDF5's `normalize` equals
  for all 2958 validation persons.
* `joints_visible` means *annotated* (the MPII loss and PCKh mask), not
  "not occluded".
"""

from __future__ import annotations

import collections
import dataclasses
import json
import zlib
from pathlib import Path
from typing import Any, Iterable

import h5py
import numpy as np
import scipy.io

from triplet_pose import keypoints as kp

MATLAB_OFFSET = 1.0  # MPII pixel coordinates are 1-based.
HDF5_CENTER_SHIFT = 15.0  # HDF5 center_y = raw + 15 * raw scale.
HDF5_SCALE_FACTOR = 1.25  # HDF5 scale = raw * 1.25.
JSON_HEAD_SIZE_PER_SCALE = 25.0  # HDF5 normalize / raw scale, for every person.
MAT_VALIDATION_MODULUS = 10  # .mat only: images with crc32 % 10 == 0 validate.


@dataclasses.dataclass(frozen=True)
class Person:
  """One annotated MPII person, in 0-based original-image pixels."""
  image: str
  person_index: int
  joints: np.ndarray  # (16, 2)
  joints_visible: np.ndarray  # (16,) 1 = annotated
  center: np.ndarray  # (2,) raw MPII centre
  scale: float  # raw MPII scale
  head_size: float
  split: str
  source: str  # "file: entry" for messages

  @property
  def key(self) -> str:
    return f"{self.image}#{self.person_index}"


@dataclasses.dataclass(frozen=True)
class TrbPerson:
  """One MPII-TRB person (contour points), in 0-based original pixels."""
  image: str
  center: np.ndarray  # (2,) the MPII person centre TRB copied
  contour: np.ndarray  # (26, 2)
  contour_visible: np.ndarray  # (26,)
  joints: np.ndarray  # (16, 2), the 14 TRB skeleton points, NaN elsewhere
  source: str


class AnnotationError(ValueError):
  """An annotation file of the wrong structure or shape."""


def _shaped(value: Any, shape: tuple[int, ...], *, what: str) -> np.ndarray:
  try:
    array = np.asarray(value, dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise AnnotationError(f"{what}: not numeric ({e})") from None
  if array.shape != shape:
    raise AnnotationError(f"{what}: expected shape {shape}, got {array.shape}")
  return array


# --------------------------------------------------------------------------
# HDF5 (stacked hourglass)


def read_hdf5(path: Path, *, split: str) -> list[Person]:
  """Reads a stacked-hourglass annotation file (`train.h5` / `valid.h5`)."""
  path = Path(path)
  with h5py.File(path, "r") as f:
    missing = [k for k in ("imgname", "part", "center", "scale") if k not in f]
    if missing:
      raise AnnotationError(f"{path}: missing datasets {missing} (has {sorted(f)})")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["imgname"][:]]
    n = len(names)
    part = _shaped(f["part"][:], (n, kp.NUM_JOINTS, 2), what=f"{path}: 'part'")
    center = _shaped(f["center"][:], (n, 2), what=f"{path}: 'center'")
    scale = _shaped(f["scale"][:], (n,), what=f"{path}: 'scale'")
    normalize = (_shaped(f["normalize"][:], (n,), what=f"{path}: 'normalize'")
                 if "normalize" in f else None)
    person = (_shaped(f["person"][:], (n,), what=f"{path}: 'person'")
              if "person" in f else None)
  raw_scale = scale / HDF5_SCALE_FACTOR
  raw_center = center - np.stack([np.zeros(n), HDF5_CENTER_SHIFT * raw_scale], -1)
  # Unannotated joints are stored as (0, 0); `visible` is occlusion, not this.
  annotated = np.any(part != 0, axis=-1)
  counter = collections.Counter()
  people = []
  for i, name in enumerate(names):
    index = int(person[i]) if person is not None else counter[name]
    counter[name] += 1
    head = float(normalize[i]) if normalize is not None else JSON_HEAD_SIZE_PER_SCALE * raw_scale[i]
    people.append(Person(
        image=name, person_index=index, joints=part[i] - MATLAB_OFFSET,
        joints_visible=annotated[i].astype(np.float32),
        center=raw_center[i] - MATLAB_OFFSET, scale=float(raw_scale[i]),
        head_size=head, split=split, source=f"{path.name}: row {i}"))
  return people


# --------------------------------------------------------------------------
# Toolbox JSON


def read_toolbox_json(path: Path, *, split: str) -> list[Person]:
  """Reads the toolbox JSON (`mpii_train.json` / `mpii_val.json`)."""
  path = Path(path)
  entries = json.loads(path.read_text())
  if not isinstance(entries, list):
    raise AnnotationError(f"{path}: expected a list of persons, got {type(entries).__name__}")
  counter = collections.Counter()
  people = []
  for i, e in enumerate(entries):
    where = f"{path}: entry {i}"
    required = {"image", "joints", "joints_vis", "center", "scale"}
    if not isinstance(e, dict) or not required <= set(e):
      raise AnnotationError(f"{where}: expected keys image, joints, joints_vis, center, scale; "
                            f"got {sorted(e) if isinstance(e, dict) else type(e).__name__}")
    where = f"{where} ({e['image']})"
    joints = _shaped(e["joints"], (kp.NUM_JOINTS, 2), what=f"{where}: 'joints'")
    vis = _shaped(e["joints_vis"], (kp.NUM_JOINTS,), what=f"{where}: 'joints_vis'")
    center = _shaped(e["center"], (2,), what=f"{where}: 'center'")
    scale = float(_shaped(e["scale"], (), what=f"{where}: 'scale'"))
    index = counter[e["image"]]
    counter[e["image"]] += 1
    people.append(Person(
        image=e["image"], person_index=index, joints=joints - MATLAB_OFFSET,
        joints_visible=(vis > 0).astype(np.float32), center=center - MATLAB_OFFSET,
        scale=scale, head_size=JSON_HEAD_SIZE_PER_SCALE * scale, split=split,
        source=f"{path.name}: entry {i}"))
  return people


# --------------------------------------------------------------------------
# Official .mat


def _items(value) -> list:
  """A MATLAB struct array (squeezed by scipy) as a list; [] when empty."""
  if value is None or (isinstance(value, np.ndarray) and value.size == 0):
    return []
  return list(np.atleast_1d(value).ravel())


def _number(value) -> float:
  value = np.asarray(value).ravel()
  if value.size != 1:
    raise ValueError(f"expected a number, got {value!r}")
  return float(value[0])


def read_mat(path: Path) -> list[Person]:
  """Reads the official `mpii_human_pose_v1_u12_1.mat` (training images only).

  The release defines no validation split; images whose name has
  `crc32 % 10 == 0` are held out as `validation` (about 10%, whole images).
  """
  path = Path(path)
  try:
    mat = scipy.io.loadmat(path, struct_as_record=False, squeeze_me=True)
  except Exception as e:  # pylint: disable=broad-except
    raise AnnotationError(f"{path}: not a readable MATLAB file ({e})") from None
  if "RELEASE" not in mat:
    names = sorted(k for k in mat if not k.startswith("__"))
    raise AnnotationError(f"{path}: no RELEASE struct (has {names})")
  release = mat["RELEASE"]
  try:
    annolist = _items(release.annolist)
    img_train = np.atleast_1d(release.img_train).ravel()
  except AttributeError as e:
    raise AnnotationError(f"{path}: RELEASE lacks annolist/img_train ({e})") from None
  if len(img_train) != len(annolist):
    raise AnnotationError(f"{path}: img_train has {len(img_train)} entries, "
                          f"annolist {len(annolist)}")
  people = []
  for i, anno in enumerate(annolist):
    if not img_train[i]:
      continue
    name = str(anno.image.name)
    split = "validation" if zlib.crc32(name.encode()) % MAT_VALIDATION_MODULUS == 0 else "train"
    for r, rect in enumerate(_items(getattr(anno, "annorect", None))):
      points = _items(getattr(getattr(rect, "annopoints", None), "point", None))
      if not points:
        continue  # a person without joint annotation (not part of MPII's set)
      where = f"{path.name}: annolist {i} ({name}) annorect {r}"
      joints = np.zeros((kp.NUM_JOINTS, 2))
      visible = np.zeros(kp.NUM_JOINTS, np.float32)
      try:
        for p in points:
          j = int(_number(p.id))
          if not 0 <= j < kp.NUM_JOINTS:
            raise ValueError(f"joint id {j} outside 0..15")
          joints[j] = (_number(p.x), _number(p.y))
          visible[j] = 1
        center = np.array([_number(rect.objpos.x), _number(rect.objpos.y)])
        scale = _number(rect.scale)
        head = 0.6 * np.hypot(_number(rect.x2) - _number(rect.x1),
                              _number(rect.y2) - _number(rect.y1))
      except (AttributeError, ValueError, TypeError) as e:
        raise AnnotationError(f"{where}: {e}") from None
      people.append(Person(
          image=name, person_index=r, joints=joints - MATLAB_OFFSET, joints_visible=visible,
          center=center - MATLAB_OFFSET, scale=scale, head_size=float(head), split=split,
          source=where))
  return people


# --------------------------------------------------------------------------
# MPII-TRB (COCO style)


def read_trb_json(path: Path) -> list[TrbPerson]:
  """Reads a COCO-style MPII-TRB file (40 named keypoints per person)."""
  path = Path(path)
  data = json.loads(path.read_text())
  try:
    names = list(data["categories"][0]["keypoints"])
    images = {im["id"]: im["file_name"] for im in data["images"]}
    annotations = data["annotations"]
  except (KeyError, IndexError, TypeError) as e:
    raise AnnotationError(f"{path}: not COCO style (categories[0].keypoints, images, "
                          f"annotations): missing {e}") from None
  unknown = [n for n in names if n not in kp.TRB_CONTOUR_NAMES and n not in kp.TRB_JOINT_NAMES]
  if unknown:
    raise AnnotationError(f"{path}: unknown keypoint names {unknown}")
  people = []
  for a in annotations:
    where = f"{path.name}: annotation id {a.get('id')}"
    values = _shaped(a.get("keypoints"), (3 * len(names),), what=f"{where}: 'keypoints'")
    values = values.reshape(len(names), 3)
    if a.get("image_id") not in images:
      raise AnnotationError(f"{where}: image_id {a.get('image_id')} not in 'images'")
    if "center" not in a:
      raise AnnotationError(f"{where}: no 'center' (needed to match the MPII person)")
    contour = np.zeros((kp.NUM_CONTOUR, 2))
    contour_visible = np.zeros(kp.NUM_CONTOUR, np.float32)
    joints = np.full((kp.NUM_JOINTS, 2), np.nan)
    for name, (x, y, v) in zip(names, values):
      if name in kp.TRB_CONTOUR_NAMES:
        c = kp.TRB_CONTOUR_NAMES[name]
        contour_visible[c] = float(v > 0)
        contour[c] = (x - MATLAB_OFFSET, y - MATLAB_OFFSET) if v > 0 else (0, 0)
      elif v > 0:
        joints[kp.TRB_JOINT_NAMES[name]] = (x - MATLAB_OFFSET, y - MATLAB_OFFSET)
    people.append(TrbPerson(
        image=images[a["image_id"]],
        center=_shaped(a["center"], (2,), what=f"{where}: 'center'") - MATLAB_OFFSET,
        contour=contour, contour_visible=contour_visible, joints=joints, source=where))
  return people


def match_trb(people: Iterable[Person], trb: Iterable[TrbPerson], *,
              tolerance: float = 5.0) -> tuple[dict[str, TrbPerson], list[TrbPerson]]:
  """Matches TRB persons to MPII persons by image name and person centre.

  Each TRB person goes to the nearest MPII person of its image whose centre
  lies within `tolerance` pixels, nearest pairs first; each is used once.

  Returns:
    ({Person.key: TrbPerson}, the TRB persons left unmatched).
  """
  by_image = collections.defaultdict(list)
  for p in people:
    by_image[p.image].append(p)
  pairs = []
  trb = list(trb)
  for t, person in enumerate(trb):
    for p in by_image.get(person.image, ()):
      d = float(np.linalg.norm(p.center - person.center))
      if d <= tolerance:
        pairs.append((d, t, p.key))
  matched, used = {}, set()
  for _, t, key in sorted(pairs):
    if t not in used and key not in matched:
      matched[key] = trb[t]
      used.add(t)
  return matched, [person for t, person in enumerate(trb) if t not in used]
