"""The base of this package's TFDS builders: array_record files, random access.

Both datasets (`mpii_trb`, `synthetic_figures`) are written as array_record
by default, which gives the input pipeline random access (an exact resume
position) through `builder.as_data_source()` / `tfds.data_source(...)`.
tf.data cannot read array_record, so `as_dataset()` / `tfds.load(...)` say
so and name the two ways out: the data source, or a build with
`file_format='tfrecord'` (then `as_dataset()` works as usual).

Also here, once for both builders: tfds 4.9.10 finds a builder's source
file through `importlib_resources`, a package Python >= 3.9 does not
install; `code_path` answers it directly.
"""

from __future__ import annotations

import inspect

import tensorflow_datasets as tfds
from etils import epath
from google.protobuf import json_format

ARRAY_RECORD = tfds.core.file_adapters.FileFormat.ARRAY_RECORD
# What array_record / riegeli raise (RuntimeError) for a damaged file.
_DAMAGE_MARKERS = ("Corrupted", "Riegeli", "RiegeliPostscript", "DATA_LOSS")


class DamagedDatasetError(ValueError):
  """A built dataset's files cannot be read: rebuild it."""


class ArrayRecordBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A GeneratorBasedBuilder writing array_record unless told otherwise.

  Subclasses are registered with TFDS as usual (by their module's name);
  this base class is not a dataset.
  """

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    return epath.Path(inspect.getfile(cls))

  def __init__(self, *, file_format=None, **kwargs):
    try:
      super().__init__(file_format=file_format or ARRAY_RECORD, **kwargs)
    except json_format.ParseError as e:  # a damaged dataset_info.json
      folder = getattr(self, "_data_dir", None) or "its data folder"
      raise DamagedDatasetError(
          f"the dataset_info.json in {folder} is damaged ({' '.join(str(e).split())[:160]}); "
          "delete that folder to rebuild it") from e

  def as_data_source(self, split=None, **kwargs):
    """TFDS's random-access sources, whose reads name a damaged build's folder."""
    sources = super().as_data_source(split, **kwargs)
    if isinstance(sources, dict):
      return {k: _CheckedSource(v, self.data_dir) for k, v in sources.items()}
    return _CheckedSource(sources, self.data_dir)

  def _as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
    requested = read_config.file_format if read_config is not None else None
    file_format = tfds.core.file_adapters.FileFormat.from_value(
        requested or self.info.file_format or ARRAY_RECORD)
    if file_format == ARRAY_RECORD:
      config = f"/{self.builder_config.name}" if self.builder_config else ""
      raise NotImplementedError(
          f"{self.name}{config} is stored as array_record, which tf.data cannot read: "
          f"use tfds.data_source('{self.name}{config}') or builder.as_data_source("
          "split=...) (random access; what triplet_pose's input pipeline uses), or "
          "build it with file_format='tfrecord' to use as_dataset() / tfds.load().")
    return super()._as_dataset(split, decoders=decoders, read_config=read_config,
                               shuffle_files=shuffle_files)


class _CheckedSource:
  """A TFDS data source whose read errors on damaged files name the folder.

  array_record reports a damaged file as a RuntimeError that names neither
  the dataset nor the file; this says which build to delete and rebuild.
  """

  def __init__(self, source, data_dir):
    self._source, self._data_dir = source, data_dir

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index):
    return self._checked(self._source.__getitem__, index)

  def __getitems__(self, indices):
    return self._checked(self._source.__getitems__, indices)

  def __iter__(self):
    for i in range(len(self)):
      yield self[i]

  def __getattr__(self, name):  # split, decoders, ... of the TFDS source
    return getattr(self._source, name)

  def __repr__(self) -> str:
    return f"checked {self._source!r}"

  def _checked(self, read, arg):
    try:
      return read(arg)
    except RuntimeError as e:
      if not any(m in str(e) for m in _DAMAGE_MARKERS):
        raise
      raise DamagedDatasetError(
          f"the dataset files in {self._data_dir} are damaged ({' '.join(str(e).split())[:200]}); "
          "delete that folder to rebuild it") from e
