"""The TFDS datasets register on `import triplet_pose.data`, as community datasets do."""

import pathlib
import shutil
import subprocess
import sys

import pytest
import tensorflow_datasets as tfds

import triplet_pose.data  # pylint: disable=unused-import  (registers the builders)
from triplet_pose.data import array_record_builder
from conftest import REPO


def test_builders_register_on_importing_the_data_package_alone():
  # A fresh process: nothing else of the project imported before.
  code = ("import tensorflow_datasets as tfds, triplet_pose.data; "
          "b = tfds.builder('mpii_trb/joints', data_dir='/nonexistent'); "
          "s = tfds.builder('synthetic_figures/tiny', data_dir='/nonexistent'); "
          "print(b.name, b.builder_config.name, s.name, b.info.file_format.value)")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.split() == ["mpii_trb", "joints", "synthetic_figures", "array_record"]


@pytest.fixture(scope="module")
def tiny_data_dir(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("tfds")
  tfds.builder("synthetic_figures/tiny", data_dir=data_dir).download_and_prepare()
  return data_dir


def test_data_source_reads_a_registered_dataset(tiny_data_dir):
  source = tfds.data_source("synthetic_figures/tiny", data_dir=tiny_data_dir, split="train")
  assert len(source) == 32
  example = source[3]
  assert example["image"].ndim == 3 and example["contour"].shape == (26, 2)


def test_as_dataset_says_to_use_as_data_source(tiny_data_dir):
  builder = tfds.builder("synthetic_figures/tiny", data_dir=tiny_data_dir)
  with pytest.raises(NotImplementedError, match=r"as_data_source\(") as e:
    builder.as_dataset(split="train")
  assert "tfds.data_source('synthetic_figures/tiny')" in str(e.value)
  with pytest.raises(NotImplementedError, match="array_record"):
    tfds.load("synthetic_figures/tiny", data_dir=tiny_data_dir, split="train")


def test_tfrecord_build_reads_with_as_dataset(tmp_path):
  builder = tfds.builder("synthetic_figures/tiny", data_dir=tmp_path, file_format="tfrecord")
  builder.download_and_prepare()
  example = next(iter(builder.as_dataset(split="validation").take(1)))
  assert tuple(example["joints"].shape) == (16, 2)


def test_a_damaged_build_names_its_folder(tiny_data_dir, tmp_path):
  data_dir = tmp_path / "tfds"
  shutil.copytree(tiny_data_dir, data_dir)
  builder = tfds.builder("synthetic_figures/tiny", data_dir=data_dir)
  for f in pathlib.Path(builder.data_dir).glob("*train.array_record*"):
    data = f.read_bytes()
    f.write_bytes(data[:len(data) // 2] + b"x" * (len(data) - len(data) // 2))
  source = tfds.data_source("synthetic_figures/tiny", data_dir=data_dir, split="train")
  with pytest.raises(array_record_builder.DamagedDatasetError) as e:
    source.__getitems__(list(range(len(source))))
  assert str(builder.data_dir) in str(e.value) and "rebuild" in str(e.value)


def test_a_damaged_dataset_info_names_its_folder(tiny_data_dir, tmp_path):
  data_dir = tmp_path / "tfds"
  shutil.copytree(tiny_data_dir, data_dir)
  info = next(data_dir.rglob("dataset_info.json"))
  info.write_text(info.read_text()[:200])  # cut short, as by a full disk
  with pytest.raises(array_record_builder.DamagedDatasetError) as e:
    tfds.builder("synthetic_figures/tiny", data_dir=data_dir)
  assert str(info.parent) in str(e.value) and "rebuild" in str(e.value)
