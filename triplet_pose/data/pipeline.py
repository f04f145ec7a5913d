"""Host input pipeline: TFDS datasets -> shuffled, repeated, batched numpy batches.

Examples are read by random access (the builders write `array_record`), so
the whole state of an iterator is one integer, the number of batches it has
yielded: the order of epoch `e` is a permutation drawn from `(seed, e)`,
process `i` of `n` takes every n-th example of it, and batch `k` is a fixed
slice of that stream. Resuming after a crash is exact and instant, and a
shuffled epoch is a true permutation of the whole split.

Images stay JPEG-encoded until a background thread decodes the next batches
(a small thread pool; PIL releases the GIL while decoding). A repeating
(training) iterator whose share of decoded examples fits in `cache_mb`
keeps them in memory after their first decoding: on a 2-core machine the
decoding threads otherwise take CPU time from every train step.
"""

from __future__ import annotations

import concurrent.futures
import functools
import io
import logging
import queue
import threading
import weakref
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from triplet_pose import transforms
from triplet_pose.data.mpii_trb import layout
from triplet_pose.data.mpii_trb import mpii_trb_dataset_builder  # pylint: disable=unused-import
from triplet_pose.data.synthetic_figures import synthetic_figures_dataset_builder

DTYPES = {"image": np.uint8, "joints": np.float32, "joints_visible": np.float32,
          "contour": np.float32, "contour_visible": np.float32, "head_size": np.float32,
          "crop_to_original": np.float32, "person_index": np.int32}
KEYS = tuple(DTYPES)
STATE_VERSION = 1


def _builder(input_config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  """The (prepared) builder named by `input_config.name`; builds it if needed.

  Raises:
    ValueError: an unknown dataset name.
    FileNotFoundError: `mpii_trb` is not built and its manual directory is
      missing (the message says what to put where).
  """
  name = input_config.name
  family = name.split("/")[0].split(":")[0]
  if family not in ("synthetic_figures", "mpii_trb"):
    raise ValueError(f"input.name {name!r}: expected 'synthetic_figures[/default|easy|small|tiny|"
                     "n<train>_<validation>_s<seed>]' or "
                     "'mpii_trb/<joints|triplets|thesis_joints|thesis_triplets>'")
  custom = (synthetic_figures_dataset_builder.config_from_name(name.split("/", 1)[1])
            if family == "synthetic_figures" and "/" in name else None)
  if custom is not None:  # 'synthetic_figures/n<train>_<validation>_s<seed>'
    builder = synthetic_figures_dataset_builder.Builder(config=custom,
                                                        data_dir=input_config.data_dir or None)
  else:
    builder = tfds.builder(name, data_dir=input_config.data_dir or None)
  if builder.is_prepared():
    return builder
  if family == "synthetic_figures":
    logging.info("Building %s in %s (about a minute)...", name, builder.data_dir)
    builder.download_and_prepare()
  else:
    # pylint: disable-next=protected-access
    default = Path(builder._data_dir_root) / "downloads" / "manual"
    manual_dir = Path(input_config.manual_dir or default).expanduser()
    if not (manual_dir / layout.IMAGES_DIR).is_dir():
      raise FileNotFoundError(
          f"{name} is not built in {builder.data_dir} and the manual directory {manual_dir} "
          f"has no '{layout.IMAGES_DIR}/' folder (set input.manual_dir).\n\n{layout.INSTRUCTIONS}")
    logging.info("Building %s from %s...", name, manual_dir)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return builder


def create_tfds_iterator(input_config: ml_collections.ConfigDict, *, split: str, batch_size: int,
                         seed: int, shuffle: bool, repeat: bool, process_index: int = 0,
                         process_count: int = 1) -> "BatchIterator":
  """Batches of this process's share of a TFDS split.

  Args:
    input_config: `config.input` (triplet_pose/config.py): name, data_dir,
      manual_dir, image_size, thesis_sampling...
    split: 'train' or 'validation' (or any split of the dataset).
    batch_size: examples per batch for THIS process.
    seed: the same on every process; fixes every epoch's order.
    shuffle: a new permutation every epoch, else the stored order.
    repeat: endless (training); else one pass whose last batch is padded,
      with `valid` False on the padding (evaluation).
    process_index: this process.
    process_count: processes sharing the split.

  Returns:
    A `BatchIterator` of dicts of numpy arrays.
  """
  source = tfds_source(input_config, split)
  sample = None
  if input_config.get("thesis_sampling", False):
    is_train = split == input_config.get("train_split", "train")
    sample = input_config.thesis_train_examples if is_train else input_config.thesis_eval_examples
  return BatchIterator(
      source, batch_size=batch_size, seed=seed, shuffle=shuffle, repeat=repeat,
      process_index=process_index, process_count=process_count,
      image_size=input_config.get("image_size", 256), examples_per_epoch=sample,
      num_threads=input_config.get("num_threads", 2),
      cache_mb=input_config.get("cache_decoded_mb", 0),
      prefetch=input_config.get("prefetch_batches", 2), name=f"{input_config.name}:{split}")


def tfds_source(input_config: ml_collections.ConfigDict, split: str):
  """The random-access source of a split's records, images still JPEG-encoded.

  Raises:
    ValueError: an unknown dataset or split.
  """
  builder = _builder(input_config)
  if split not in builder.info.splits:
    raise ValueError(f"{input_config.name} has no split {split!r} "
                     f"(has {list(builder.info.splits)})")
  return builder.as_data_source(split, decoders={"image": tfds.decode.SkipDecoding()})


def decode_record(record: dict, *, image_size: int) -> dict[str, Any]:
  """One stored record -> one example: the JPEG decoded, resized to image_size."""
  image = np.asarray(Image.open(io.BytesIO(record["image"])).convert("RGB"))
  example = {k: np.asarray(record[k]) for k in KEYS if k != "image"}
  example["image"] = image
  example["image_name"] = record["image_name"]
  if image.shape[0] != image_size or image.shape[1] != image_size:
    example = _resize_example(example, image_size)
  return example


class BatchIterator:
  """Deterministic, checkpointable batches from a random-access source.

  Attributes:
    num_examples: examples in one epoch (all processes together).
    batches_per_epoch: batches this process yields per epoch.
  """

  def __init__(self, source, *, batch_size: int, seed: int, shuffle: bool, repeat: bool,
               process_index: int = 0, process_count: int = 1, image_size: int = 256,
               examples_per_epoch: int | None = None, num_threads: int = 2, prefetch: int = 2,
               cache_mb: float = 0, name: str = ""):
    if not 0 <= process_index < process_count:
      raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    self._source = source
    self._size = len(source)
    if self._size == 0:
      raise ValueError(f"{name}: the split is empty")
    self.batch_size = batch_size
    self._seed, self._shuffle, self._repeat = seed, shuffle, repeat
    self._index, self._count = process_index, process_count
    self._image_size = image_size
    self._sampled = examples_per_epoch is not None
    self.num_examples = min(examples_per_epoch, self._size) if self._sampled else self._size
    # Examples of one epoch that fall to this process (the longest share
    # when they do not divide evenly, so every process yields as many batches).
    self._share = -(-self.num_examples // process_count)
    self._own = len(range(process_index, self.num_examples, process_count))
    self.batches_per_epoch = -(-self._share // batch_size)
    if repeat and self._own == 0:
      raise ValueError(f"{name}: {self.num_examples} examples cannot feed "
                       f"{process_count} processes")
    self._name = name
    self._num_threads, self._prefetch = num_threads, prefetch
    self._position = 0
    self._epoch_cache: tuple[int, np.ndarray] | None = None
    self._thread: threading.Thread | None = None
    self._stop = threading.Event()
    self._queue: queue.Queue = queue.Queue()
    self._pool = concurrent.futures.ThreadPoolExecutor(max(1, num_threads))
    # Decoded examples by source index (only the loading thread touches it).
    decoded_mb = self._own * image_size * image_size * 3 / 2**20
    self._cache: dict[int, dict] | None = {} if repeat and decoded_mb <= cache_mb else None

  @property
  def caches_decoded(self) -> bool:
    """Whether decoded examples are kept in memory (see the module docstring)."""
    return self._cache is not None

  # ---------------------------------------------------------------- order

  def _epoch_order(self, epoch: int) -> np.ndarray:
    """This process's examples of `epoch`, in order."""
    if self._epoch_cache is None or self._epoch_cache[0] != epoch:
      if self._shuffle or self._sampled:
        order = np.random.default_rng([self._seed, epoch]).permutation(self._size)
      else:
        order = np.arange(self._size)
      order = order[:self.num_examples][self._index::self._count]
      self._epoch_cache = (epoch, order)
    return self._epoch_cache[1]

  def batch_indices(self, position: int) -> tuple[np.ndarray, np.ndarray]:
    """(source indices, valid mask) of batch number `position` of this process."""
    stream = np.arange(position * self.batch_size, (position + 1) * self.batch_size)
    if self._repeat:
      epochs, offsets = np.divmod(stream, self._own)
      indices = np.array([self._epoch_order(int(e))[o] for e, o in zip(epochs, offsets)])
      return indices, np.ones(self.batch_size, bool)
    valid = stream < self._own
    order = self._epoch_order(0)
    indices = order[np.where(valid, stream, 0)] if self._own else np.zeros(self.batch_size, int)
    return indices, valid

  # ---------------------------------------------------------------- loading

  def _load(self, position: int) -> dict[str, np.ndarray]:
    indices, valid = self.batch_indices(position)
    examples = self._examples([int(i) for i in indices])
    batch = {k: np.stack([e[k] for e in examples]).astype(DTYPES[k], copy=False) for k in KEYS}
    batch["image_name"] = np.array([e["image_name"] for e in examples], dtype=object)
    batch["valid"] = valid
    return batch

  def _examples(self, indices: list[int]) -> list[dict]:
    if self._cache is None:
      return self._decode(indices)
    missing = sorted({i for i in indices if i not in self._cache})
    if missing:
      self._cache.update(zip(missing, self._decode(missing)))
    return [self._cache[i] for i in indices]

  def _decode(self, indices: list[int]) -> list[dict]:
    records = self._source.__getitems__(indices)
    return list(self._pool.map(
        functools.partial(decode_record, image_size=self._image_size), records))

  def _start(self) -> None:
    self._stop = threading.Event()
    self._queue = queue.Queue(maxsize=max(1, self._prefetch))
    # The thread holds only a weak reference, so an iterator that is dropped
    # without close() is collected and its thread ends.
    self._thread = threading.Thread(
        target=_produce, args=(weakref.ref(self), self._position, self._stop, self._queue),
        daemon=True, name=f"batches {self._name}")
    self._thread.start()

  def _halt(self) -> None:
    if self._thread is not None:
      self._stop.set()
      self._thread.join()
      self._thread = None

  # ---------------------------------------------------------------- protocol

  def __iter__(self) -> "BatchIterator":
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if not self._repeat and self._position >= self.batches_per_epoch:
      raise StopIteration
    if self._thread is None:
      self._start()
    item = self._queue.get()
    if isinstance(item, Exception):
      self._thread = None
      raise item
    self._position += 1
    return item

  def get_state(self) -> dict[str, Any]:
    """JSON-serialisable position (batches yielded) and what it is valid for."""
    return {"version": STATE_VERSION, "position": self._position, "name": self._name,
            "seed": self._seed, "batch_size": self.batch_size, "process_count": self._count,
            "num_examples": self.num_examples, "dataset_size": self._size}

  def set_state(self, state: dict[str, Any]) -> None:
    """Continues from a `get_state()` position.

    Raises:
      ValueError: the state was taken with another batch size, process count,
        seed or dataset, where the same position means other examples.
    """
    mine = self.get_state()
    for key in ("seed", "batch_size", "process_count", "num_examples", "dataset_size"):
      if key in state and state[key] != mine[key]:
        raise ValueError(f"{self._name}: cannot resume: the saved iterator state has {key}="
                         f"{state[key]}, this iterator {mine[key]}")
    self._halt()
    self._position = int(state["position"])

  def close(self) -> None:
    """Stops the background thread."""
    self._halt()
    self._pool.shutdown(wait=False)

  def __del__(self):
    try:
      self._stop.set()
      self._pool.shutdown(wait=False)
    except AttributeError:
      pass


def _produce(ref, position: int, stop: threading.Event, out: queue.Queue) -> None:
  """Background thread: loads batches from `position` on into `out`."""
  while not stop.is_set():
    iterator = ref()
    # pylint: disable-next=protected-access
    if iterator is None or (not iterator._repeat and position >= iterator.batches_per_epoch):
      return
    try:
      item = iterator._load(position)  # pylint: disable=protected-access
    except Exception as e:  # pylint: disable=broad-except  (re-raised in __next__)
      item = e
    del iterator
    while not stop.is_set():
      try:
        out.put(item, timeout=0.1)
        break
      except queue.Full:
        if ref() is None:
          return
    if isinstance(item, Exception):
      return
    position += 1


def _resize_example(example: dict, size: int) -> dict:
  """Resizes a square crop to size x size; keypoints and normalisers follow."""
  old = example["image"].shape[0]
  factor = size / old
  # Pixel centres: x -> (x + 0.5) * factor - 0.5.
  resize = transforms.scale_translate_affine(np.full(2, factor), np.full(2, 0.5 * factor - 0.5))
  example = dict(example)
  example["image"] = np.asarray(Image.fromarray(example["image"]).resize(
      (size, size), Image.Resampling.BILINEAR, reducing_gap=2.0))
  for key, visible in (("joints", "joints_visible"), ("contour", "contour_visible")):
    moved = transforms.apply_affine(resize, example[key].astype(np.float64))
    example[key] = np.where(example[visible][:, None] > 0, moved, 0).astype(np.float32)
  example["head_size"] = np.float32(example["head_size"] * factor)
  example["crop_to_original"] = transforms.compose_affines(
      example["crop_to_original"].astype(np.float64),
      transforms.invert_affine(resize)).astype(np.float32)
  return example
