"""Input data: the 'fake' input and the TFDS datasets behind one constructor.

Importing this package registers the TFDS datasets `mpii_trb`,
`synthetic_figures` and `synthetic_scenes` (docs/data.md). Datasets of
several people per image (`scene_pipeline.is_scene_dataset`) batch persons
padded to `input.max_persons` (keys in `scene_pipeline`).

Every iterator yields dicts of numpy arrays for this process's share of the
global batch (keys: image uint8 (B,H,W,3), joints (B,16,2), joints_visible
(B,16), contour (B,26,2), contour_visible (B,26), head_size (B,),
crop_to_original (B,2,3), person_index (B,), valid (B,)), and has
`get_state()` / `set_state()` so that training resumes at the exact batch.
"""

from __future__ import annotations

import jax
import ml_collections

from triplet_pose.data import pipeline
from triplet_pose.data import scene_pipeline
from triplet_pose.data.fake import FakeIterator
# Imported for TFDS's registration: after `import triplet_pose.data`,
# tfds.builder('mpii_trb/joints') and tfds.data_source('synthetic_figures')
# find these builders, as for TFDS community datasets.
from triplet_pose.data.mpii_trb import mpii_trb_dataset_builder  # pylint: disable=unused-import
from triplet_pose.data.synthetic_figures import synthetic_figures_dataset_builder  # pylint: disable=unused-import
from triplet_pose.data.synthetic_scenes import synthetic_scenes_dataset_builder  # pylint: disable=unused-import


def create_iterator(input_config: ml_collections.ConfigDict, *, split: str,
                    batch_size: int, seed: int, shuffle: bool = True,
                    repeat: bool = True):
  """Creates the batch iterator named by `input_config.name` for this process.

  Args:
    input_config: the `config.input` section (triplet_pose/config.py).
    split: dataset split, e.g. 'train' or 'validation'.
    batch_size: the GLOBAL batch size; each process gets its share.
    seed: shuffling seed (the same on every process).
    shuffle: shuffle examples (training) or keep the file order (evaluation).
    repeat: repeat forever (training) or stop after one pass, padding the
      last batch and marking padding with `valid == False` (evaluation).

  Raises:
    ValueError: when the global batch does not split evenly over processes.
  """
  process_count = jax.process_count()
  if batch_size % process_count:
    raise ValueError(f"batch size {batch_size} is not divisible by the "
                     f"{process_count} processes")
  local_batch = batch_size // process_count
  if input_config.name == "fake":
    num = input_config.fake_num_examples
    return FakeIterator(num_examples=num, batch_size=local_batch,
                        image_size=input_config.image_size,
                        seed=seed if split == "train" else seed + 1,
                        repeat=repeat, process_index=jax.process_index(),
                        process_count=process_count)
  if scene_pipeline.is_scene_dataset(input_config.name):
    return scene_pipeline.create_scene_iterator(
        input_config, split=split, batch_size=local_batch, seed=seed, shuffle=shuffle,
        repeat=repeat, process_index=jax.process_index(), process_count=process_count)
  return pipeline.create_tfds_iterator(
      input_config, split=split, batch_size=local_batch, seed=seed,
      shuffle=shuffle, repeat=repeat, process_index=jax.process_index(),
      process_count=process_count)


def tfds_source(input_config: ml_collections.ConfigDict, split: str):
  """The random-access TFDS source of a split of the dataset `input_config.name`
  names (single person or scenes, as `create_iterator` picks), images still encoded.

  Raises:
    ValueError: an unknown split.
  """
  if scene_pipeline.is_scene_dataset(input_config.name):
    return scene_pipeline.tfds_source(input_config, split)
  return pipeline.tfds_source(input_config, split)
