"""Tests of the `mpii_trb` builder, from manual directories the tests write themselves.

Three images with bright markers on the joints, annotated in the three MPII
formats (official .mat, toolbox JSON, stacked-hourglass HDF5) plus MPII-TRB
contour points; and, when present, the real sample in ../shared/data.
"""

import json
import logging

import h5py
import numpy as np
import pytest
import scipy.io
import tensorflow_datasets as tfds
from PIL import Image

from triplet_pose import keypoints as kp
from triplet_pose import transforms
from triplet_pose.data.mpii_trb import annotations
from triplet_pose.data.mpii_trb import layout
from triplet_pose.data.mpii_trb import mpii_trb_dataset_builder  # pylint: disable=unused-import

# image -> (width, height, persons); a person is (raw centre, scale, unannotated joints)
# in 1-based MATLAB pixels, as the MPII files store them.
IMAGES = {
    "img_a.jpg": (320, 240, [((100.0, 110.0), 0.9, ()), ((230.0, 120.0), 0.8, ())]),
    "img_b.jpg": (400, 300, [((200.0, 150.0), 1.0, (0,))]),
    "img_c.jpg": (300, 400, [((150.0, 190.0), 1.1, ())]),
}
TRAIN, VALID = ("img_a.jpg", "img_b.jpg"), ("img_c.jpg",)
TRB_PERSONS = (("img_a.jpg", 0), ("img_c.jpg", 0))  # matched; plus one that matches nobody


def _joints(center, scale, seed):
  rng = np.random.default_rng(seed)
  return np.asarray(center) + rng.uniform(-70, 70, (kp.NUM_JOINTS, 2)) * scale


def _persons():
  """[(image, index, joints (16,2) 1-based, annotated (16,), centre, scale)]."""
  out = []
  for i, (name, (_, _, persons)) in enumerate(IMAGES.items()):
    for p, (center, scale, missing) in enumerate(persons):
      annotated = np.ones(kp.NUM_JOINTS, bool)
      annotated[list(missing)] = False
      out.append((name, p, _joints(center, scale, 10 * i + p), annotated, np.array(center), scale))
  return out


def _contour(joints):
  parents = np.asarray(kp.CONTOUR_PARENT_JOINT)
  side = np.where(np.arange(kp.NUM_CONTOUR) % 2 == 0, -6.0, 6.0)
  return joints[parents] + np.stack([side, np.zeros_like(side)], -1)


def _write_images(folder, *, skip=(), corrupt=()):
  folder.mkdir(parents=True)
  rng = np.random.default_rng(0)
  for name, (w, h, _) in IMAGES.items():
    if name in skip:
      continue
    if name in corrupt:
      (folder / name).write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
      continue
    pixels = rng.integers(0, 40, (h, w, 3)).astype(np.uint8)
    for image, _, joints, annotated, _, _ in _persons():
      if image == name:
        for x, y in joints[annotated] - 1:  # markers at the 0-based pixel
          xi, yi = int(round(x)), int(round(y))
          pixels[max(yi - 2, 0):yi + 3, max(xi - 2, 0):xi + 3] = 255
    Image.fromarray(pixels).save(folder / name, quality=98)


def _write_json(manual, *, nan=False, bad_shape=False, missing=False):
  for split, names in (("train", TRAIN), ("validation", VALID)):
    entries = []
    for image, _, joints, annotated, center, scale in _persons():
      if image in names:
        joints = np.where(annotated[:, None], joints, 0.0)
        entries.append(dict(image=image, joints=joints.tolist(),
                            joints_vis=annotated.astype(int).tolist(), center=center.tolist(),
                            scale=scale))
    if nan and split == "validation":
      entries.append(dict(entries[0], joints=[[float("nan"), 1.0]] * 16))
    if missing and split == "train":
      entries.append(dict(entries[0], image="img_missing.jpg"))
    if bad_shape and split == "train":
      entries[1]["joints"] = entries[1]["joints"][:15]
    (manual / layout.JSON_FILES[split]).write_text(json.dumps(entries))


def _write_hdf5(manual):
  for split, names in (("train", TRAIN), ("validation", VALID)):
    rows = [p for p in _persons() if p[0] in names]
    with h5py.File(manual / layout.HDF5_FILES[split], "w") as f:
      f["imgname"] = np.array([r[0].encode() for r in rows])
      f["part"] = np.stack([np.where(r[3][:, None], r[2], 0.0) for r in rows])
      f["visible"] = np.stack([r[3].astype(float) for r in rows])
      # The stacked-hourglass files store the adjusted centre and scale.
      f["center"] = np.stack([r[4] + [0, 15 * r[5]] for r in rows])
      f["scale"] = np.array([r[5] * 1.25 for r in rows])
      f["normalize"] = np.array([25.0 * r[5] for r in rows])
      f["person"] = np.array([float(r[1]) for r in rows])


def _struct_array(records, fields):
  array = np.zeros((1, len(records)), dtype=[(f, "O") for f in fields])
  for i, r in enumerate(records):
    for f in fields:
      array[0, i][f] = r[f]
  return array


def _write_mat(manual):
  annolist = []
  for name in IMAGES:
    rects = []
    for image, _, joints, annotated, center, scale in _persons():
      if image != name:
        continue
      points = _struct_array(
          [dict(x=joints[j, 0], y=joints[j, 1], id=j, is_visible=1)
           for j in np.flatnonzero(annotated)],
          ["x", "y", "id", "is_visible"])
      half = 25 * scale / (0.6 * np.sqrt(2)) / 2  # 0.6 x diagonal = 25 x scale
      rects.append(dict(x1=center[0] - half, y1=center[1] - half, x2=center[0] + half,
                        y2=center[1] + half, scale=scale,
                        objpos={"x": center[0], "y": center[1]},
                        annopoints={"point": points}))
    annolist.append(dict(image={"name": name},
                         annorect=_struct_array(rects, list(rects[0])), frame_sec=0, vididx=1))
  annolist.append(dict(image={"name": "test_image.jpg"}, annorect=np.zeros((0, 0)), frame_sec=0,
                       vididx=1))
  release = dict(annolist=_struct_array(annolist, ["image", "annorect", "frame_sec", "vididx"]),
                 img_train=np.array([[1, 1, 1, 0]]), version="12")
  scipy.io.savemat(manual / layout.MAT_FILE, {"RELEASE": release})


def _write_trb(manual):
  names = list(kp.TRB_JOINT_NAMES) + list(kp.TRB_CONTOUR_NAMES)
  images, anns = [], []
  for i, name in enumerate(IMAGES):
    images.append(dict(file_name=name, id=i + 1, width=IMAGES[name][0], height=IMAGES[name][1]))
  people = {(p[0], p[1]): p for p in _persons()}
  entries = [(people[key], (0.0, 0.0)) for key in TRB_PERSONS]
  entries.append((people[("img_b.jpg", 0)], (40.0, 0.0)))  # centre 40 px off: unmatched
  for n, (person, shift) in enumerate(entries):
    image, _, joints, _, center, scale = person
    contour = _contour(joints)
    values = []
    for name in names:
      xy = (joints[kp.TRB_JOINT_NAMES[name]] if name in kp.TRB_JOINT_NAMES
            else contour[kp.TRB_CONTOUR_NAMES[name]])
      values += [float(xy[0]), float(xy[1]), 2]
    anns.append(dict(id=100 + n, image_id=list(IMAGES).index(image) + 1, keypoints=values,
                     center=(center + shift).tolist(), scale=scale / 5, num_joints=40))
  data = dict(categories=[dict(id=1, name="person", keypoints=names)], images=images,
              annotations=anns)
  for f in layout.TRB_FILES:
    content = data if f == layout.TRB_FILES[0] else dict(data, annotations=[])
    (manual / f).write_text(json.dumps(content))


@pytest.fixture(scope="module")
def manual_dirs(tmp_path_factory):
  root = tmp_path_factory.mktemp("mpii")
  dirs = {}
  for kind, writer in (("json", _write_json), ("hdf5", _write_hdf5), ("mat", _write_mat)):
    manual = root / kind
    _write_images(manual / "images")
    writer(manual)
    _write_trb(manual)
    dirs[kind] = manual
  return dirs


def _build(manual, config, data_dir):
  builder = tfds.builder(f"mpii_trb/{config}", data_dir=str(data_dir))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
  return builder


def _examples(builder, split):
  source = builder.as_data_source(split)
  return [source[i] for i in range(len(source))]


def _source_person(example):
  name = example["image_name"].decode()
  for image, index, joints, annotated, _, _ in _persons():
    if image == name and index == example["person_index"]:
      return joints - annotations.MATLAB_OFFSET, annotated
  raise KeyError(name)


def _check_example(example, *, expect_contour):
  joints, annotated = _source_person(example)
  assert example["image"].shape == (256, 256, 3)
  np.testing.assert_array_equal(example["joints_visible"], annotated.astype(np.float32))
  back = transforms.apply_affine(example["crop_to_original"].astype(np.float64),
                                 example["joints"].astype(np.float64))
  np.testing.assert_allclose(back[annotated], joints[annotated], atol=1e-2)
  # The image moved with the keypoints: every marker is under its joint.
  for x, y in example["joints"][annotated]:
    if 1 <= x <= 254 and 1 <= y <= 254:
      xi, yi = int(round(x)), int(round(y))
      patch = example["image"][yi - 1:yi + 2, xi - 1:xi + 2]
      assert patch.mean() > 150, (example["image_name"], x, y, patch.mean())
  if expect_contour:
    assert example["contour_visible"].all()
    back = transforms.apply_affine(example["crop_to_original"].astype(np.float64),
                                   example["contour"].astype(np.float64))
    np.testing.assert_allclose(back, _contour(joints + 1) - 1, atol=1e-2)
  else:
    assert not example["contour_visible"].any()


@pytest.mark.parametrize("config,counts", [
    ("joints", {"train": 3, "validation": 1}),
    ("triplets", {"train": 1, "validation": 1}),
    ("thesis_joints", {"train": 2, "validation": 1}),
    ("thesis_triplets", {"train": 1, "validation": 1}),
])
def test_build_every_config_from_json(manual_dirs, tmp_path, config, counts):
  builder = _build(manual_dirs["json"], config, tmp_path)
  assert {s: builder.info.splits[s].num_examples for s in counts} == counts
  matched = {("img_a.jpg", 0), ("img_c.jpg", 0)}
  for split in counts:
    for ex in _examples(builder, split):
      key = (ex["image_name"].decode(), int(ex["person_index"]))
      _check_example(ex, expect_contour=key in matched)
      if config.startswith("thesis"):
        # White padding beside the keypoint box (img_c is taller than wide).
        if key[0] == "img_c.jpg":
          assert (ex["image"][:, :3] > 245).all()
        assert ex["joints"].min() >= 0 and ex["joints"].max() <= 255
      np.testing.assert_allclose(ex["head_size"], 25 * dict(
          ((p[0], p[1]), p[5]) for p in _persons())[key] * abs(
              np.linalg.det(ex["crop_to_original"][:, :2].astype(np.float64))) ** -0.5, rtol=1e-4)
  assert builder.info.metadata["unmatched_trb_persons"] == 1


def test_hdf5_and_mat_give_the_same_crops_as_json(manual_dirs, tmp_path):
  crops = {}
  for kind in ("json", "hdf5", "mat"):
    builder = _build(manual_dirs[kind], "joints", tmp_path / kind)
    splits = list(builder.info.splits)
    for split in splits:
      for ex in _examples(builder, split):
        _check_example(ex, expect_contour=(ex["image_name"].decode(), ex["person_index"])
                       in {("img_a.jpg", 0), ("img_c.jpg", 0)})
        crops.setdefault(kind, {})[(ex["image_name"], int(ex["person_index"]))] = ex
  assert set(crops["json"]) == set(crops["hdf5"]) == set(crops["mat"])
  for key, ex in crops["json"].items():
    for kind in ("hdf5", "mat"):
      np.testing.assert_allclose(crops[kind][key]["crop_to_original"], ex["crop_to_original"],
                                 atol=1e-3)
      np.testing.assert_allclose(crops[kind][key]["head_size"], ex["head_size"], rtol=1e-3)


def test_bad_inputs_are_skipped_by_name_and_counted(tmp_path, caplog):
  manual = tmp_path / "manual"
  _write_images(manual / "images", corrupt=("img_b.jpg",))
  _write_json(manual, nan=True, missing=True)
  with caplog.at_level(logging.WARNING):
    builder = _build(manual, "joints", tmp_path / "data")
  assert builder.info.splits["train"].num_examples == 2
  assert builder.info.splits["validation"].num_examples == 1
  reloaded = tfds.builder("mpii_trb/joints", data_dir=str(tmp_path / "data"))
  skipped = reloaded.info.metadata["skipped"]
  assert skipped == {"train": {"corrupt image": 1, "missing image": 1},
                     "validation": {"non-finite coordinates": 1}}
  log = caplog.text
  assert "img_b.jpg (OSError" in log and "corrupt image" in log
  assert "mpii_train.json: entry 2" in log
  assert "img_missing.jpg: person 0 (mpii_train.json: entry 3)" in log and "missing image" in log
  assert "non-finite coordinates) img_c.jpg person 1 (mpii_val.json: entry 1)" in log
  assert "train: wrote 2 persons, skipped 2 (corrupt image: 1, missing image: 1)" in log


def test_split_without_any_usable_person_fails_with_the_summary(tmp_path):
  manual = tmp_path / "manual"
  _write_images(manual / "images", corrupt=("img_a.jpg", "img_b.jpg"))
  _write_json(manual)
  with pytest.raises(ValueError, match=r"train: wrote 0 persons, skipped 3 \(corrupt image: 3\)"):
    _build(manual, "joints", tmp_path / "data")


def test_wrong_shape_annotation_names_file_entry_and_field(tmp_path):
  manual = tmp_path / "manual"
  _write_images(manual / "images")
  _write_json(manual, bad_shape=True)
  with pytest.raises(annotations.AnnotationError, match=r"mpii_train.json: entry 1 \(img_a.jpg\): "
                     r"'joints': expected shape \(16, 2\), got \(15, 2\)"):
    _build(manual, "joints", tmp_path / "data")


def test_missing_manual_dir_says_what_to_put_where(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist") as info:
    _build(tmp_path / "nowhere", "joints", tmp_path / "data")
  message = str(info.value)
  for needed in ("images/*.jpg", layout.MAT_FILE, "mpii_train.json", "valid.h5",
                 "mpii_trb_train.json"):
    assert needed in message
  (tmp_path / "empty" / "images").mkdir(parents=True)
  with pytest.raises(FileNotFoundError, match="no MPII annotation files"):
    layout.read_manual_dir(tmp_path / "empty")


def test_match_trb_nearest_within_tolerance():
  person = lambda i, c: annotations.Person("x.jpg", i, np.zeros((16, 2)), np.ones(16), np.array(c),
                                           1.0, 25.0, "train", "")
  trb = lambda c: annotations.TrbPerson("x.jpg", np.array(c), np.zeros((26, 2)), np.ones(26),
                                        np.zeros((16, 2)), "")
  people = [person(0, (10, 10)), person(1, (13, 10))]
  matched, unmatched = annotations.match_trb(
      people, [trb((12.5, 10)), trb((11, 10)), trb((50, 50))])
  assert matched["x.jpg#1"].center[0] == 12.5 and matched["x.jpg#0"].center[0] == 11
  assert len(unmatched) == 1 and unmatched[0].center[0] == 50


# --------------------------------------------------------------------------
# The real sample (validation data of public projects).


def _sample_manual(sample, root, annotation):
  manual = root / annotation
  manual.mkdir(parents=True)
  (manual / "images").symlink_to(sample / "images")
  if annotation == "hdf5":
    (manual / "valid.h5").symlink_to(sample / "mpii_valid_annotations.h5")
  else:
    (manual / "mpii_val.json").symlink_to(sample / "mpii_annotations.json")
  (manual / "mpii_trb_val.json").symlink_to(sample / "mpii_trb_annotations.json")
  return manual


def test_real_sample(mpii_sample, tmp_path):
  h5 = _build(_sample_manual(mpii_sample, tmp_path, "hdf5"), "joints", tmp_path / "d1")
  js = _build(_sample_manual(mpii_sample, tmp_path, "json"), "joints", tmp_path / "d2")
  # valid.h5 lists the 2958 validation persons; the sample has 5 of their images.
  assert h5.info.splits["validation"].num_examples == 5
  assert h5.info.metadata["skipped"]["validation"] == {"missing image": 2953}
  assert h5.info.metadata["unmatched_trb_persons"] == 0
  with h5py.File(mpii_sample / "mpii_valid_annotations.h5") as f:
    names = [n.decode() for n in f["imgname"][:]]
    part = f["part"][:]
  trb = {t.image: t for t in annotations.read_trb_json(mpii_sample / "mpii_trb_annotations.json")}
  by_name = {ex["image_name"].decode(): ex for ex in _examples(js, "validation")}
  for ex in _examples(h5, "validation"):
    name = ex["image_name"].decode()
    source = part[names.index(name)] - 1
    annotated = ex["joints_visible"] > 0
    back = transforms.apply_affine(ex["crop_to_original"].astype(np.float64), ex["joints"])
    np.testing.assert_allclose(back[annotated], source[annotated], atol=1e-2)
    cv = ex["contour_visible"] > 0
    assert cv.sum() >= 20
    back = transforms.apply_affine(ex["crop_to_original"].astype(np.float64), ex["contour"])
    np.testing.assert_allclose(back[cv], trb[name].contour[cv], atol=1e-2)
    # The toolbox JSON and the HDF5 describe the same crop.
    np.testing.assert_allclose(by_name[name]["crop_to_original"], ex["crop_to_original"], atol=1e-2)
    np.testing.assert_allclose(by_name[name]["head_size"], ex["head_size"], rtol=1e-3)
  thesis = _build(_sample_manual(mpii_sample, tmp_path / "t", "hdf5"), "thesis_triplets",
                  tmp_path / "d3")
  examples = _examples(thesis, "validation")
  assert len(examples) == 3  # two of the five lack an annotated ankle
  for ex in examples:
    points = np.concatenate([ex["joints"], ex["contour"][ex["contour_visible"] > 0]])
    assert points.min() >= 0 and points.max() <= 255
