"""`mpii_trb/multi_person`: every annotated person of an image in one example."""

import json

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from triplet_pose import transforms
from triplet_pose.data import scene_features
from triplet_pose.data.mpii_trb import annotations
from triplet_pose.data.mpii_trb import mpii_trb_dataset_builder  # pylint: disable=unused-import


def _build(manual, data_dir):
  builder = tfds.builder("mpii_trb/multi_person", data_dir=str(data_dir))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
  return builder


def _examples(builder, split):
  source = builder.as_data_source(split)
  return [source[i] for i in range(len(source))]


def test_two_people_of_one_image_share_one_crop(tmp_path):
  manual = tmp_path / "manual"
  (manual / "images").mkdir(parents=True)
  rng = np.random.default_rng(0)
  pixels = rng.integers(0, 40, (300, 400, 3)).astype(np.uint8)
  persons = []
  for center, scale in (((120.0, 150.0), 0.8), ((290.0, 140.0), 0.6)):
    joints = np.asarray(center) + rng.uniform(-60, 60, (16, 2)) * scale
    for x, y in joints - 1:
      pixels[int(round(y)) - 2:int(round(y)) + 3, int(round(x)) - 2:int(round(x)) + 3] = 255
    persons.append({"image": "two.jpg", "joints": joints.tolist(), "joints_vis": [1] * 16,
                    "center": list(center), "scale": scale})
  Image.fromarray(pixels).save(manual / "images" / "two.jpg", quality=98)
  (manual / "mpii_val.json").write_text(json.dumps(persons))
  (ex,) = _examples(_build(manual, tmp_path / "data"), "validation")
  assert ex["joints"].shape == (2, 16, 2) and ex["image"].shape == (256, 256, 3)
  back = transforms.apply_affine(ex["crop_to_original"].astype(np.float64), ex["joints"])
  for i, person in enumerate(persons):
    np.testing.assert_allclose(back[i], np.asarray(person["joints"]) - 1, atol=1e-2)
    zoom = abs(np.linalg.det(ex["crop_to_original"][:, :2].astype(np.float64))) ** -0.5
    np.testing.assert_allclose(ex["head_size"][i], 25 * person["scale"] * zoom, rtol=1e-4)
  # Every joint of both persons is inside the crop, on its marker.
  for x, y in ex["joints"].reshape(-1, 2):
    assert 0 <= x <= 255 and 0 <= y <= 255
    assert ex["image"][int(round(y)) - 1:int(round(y)) + 2,
                       int(round(x)) - 1:int(round(x)) + 2].mean() > 100
  assert (ex["joints_occlusion"] == scene_features.UNKNOWN).all()
  np.testing.assert_allclose(ex["boxes"][0, :2], ex["joints"][0].min(0))


def test_real_sample_every_image_once(mpii_sample, tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  (manual / "images").symlink_to(mpii_sample / "images")
  (manual / "valid.h5").symlink_to(mpii_sample / "mpii_valid_annotations.h5")
  (manual / "mpii_trb_val.json").symlink_to(mpii_sample / "mpii_trb_annotations.json")
  builder = _build(manual, tmp_path / "data")
  examples = _examples(builder, "validation")
  people = [p for p in annotations.read_hdf5(mpii_sample / "mpii_valid_annotations.h5",
                                             split="validation")
            if (mpii_sample / "images" / p.image).is_file()]
  by_image = {}
  for p in people:
    by_image.setdefault(p.image, []).append(p)
  assert sorted(e["image_name"].decode() for e in examples) == sorted(by_image)
  for ex in examples:
    truth = by_image[ex["image_name"].decode()]
    assert len(ex["joints"]) == len(truth)
    back = transforms.apply_affine(ex["crop_to_original"].astype(np.float64), ex["joints"])
    for i, p in enumerate(truth):
      shown = p.joints_visible > 0
      np.testing.assert_allclose(back[i][shown], p.joints[shown], atol=1e-2)
    assert ex["contour_visible"].sum() >= 20  # the TRB contour came along
