"""Config sections shared by every experiment (input, augmentation, model, optimiser...).

Experiment configs (`configs/joint.py`, `configs/triplet.py`, ...) start from
`base_config()` and override what differs.
"""

import ml_collections


def input_config() -> ml_collections.ConfigDict:
  """Where examples come from and how they are batched."""
  c = ml_collections.ConfigDict()
  # 'fake' (random arrays of the right shapes), 'synthetic_figures',
  # 'mpii_trb/joints', 'mpii_trb/triplets', 'mpii_trb/thesis_joints', ...
  c.name = "fake"
  c.data_dir = ""  # tfds data_dir; '' = tfds default (~/tensorflow_datasets).
  c.manual_dir = ""  # where the user put MPII / MPII-TRB files.
  c.train_split = "train"
  c.eval_split = "validation"
  c.image_size = 256
  c.heatmap_size = 64
  c.batch_size = 4  # global, over all devices and hosts.
  c.eval_batch_size = 8
  c.shuffle_buffer = 1000
  # The thesis: 500 random training and 50 random test images per epoch.
  c.thesis_sampling = False
  c.thesis_train_examples = 500
  c.thesis_eval_examples = 50
  c.fake_num_examples = 64  # size of the 'fake' dataset.
  return c


def augment_config() -> ml_collections.ConfigDict:
  """On-device augmentation, run inside the jitted train step."""
  c = ml_collections.ConfigDict()
  c.enabled = False
  c.rotation_degrees = 30.0
  c.scale_range = (0.75, 1.25)
  c.translation_fraction = 0.1
  c.flip_probability = 0.5
  c.color_jitter = 0.2
  return c
