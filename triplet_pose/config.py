"""Config sections the library reads, with their defaults, and typed config arguments.

Every field a training run reads is defined here, once: `base_config()` is the
thesis joint model. Experiment files in `configs/` start from it and override
what differs; the library itself never imports `configs/` (older workdirs are
completed from `base_config()` when loaded, `config_files.load_config`).
"""

from __future__ import annotations

from typing import Any

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
  c.num_threads = 2  # JPEG-decoding threads of the TFDS pipeline.
  c.prefetch_batches = 2  # batches the TFDS pipeline prepares ahead.
  # Training batches keep decoded examples in memory when this process's share
  # fits in this many MiB (the synthetic demo data: 196 MiB), instead of
  # decoding every JPEG once per epoch; 0 never.
  c.cache_decoded_mb = 1024
  # The thesis: 500 random training and 50 random test images per epoch.
  c.thesis_sampling = False
  c.thesis_train_examples = 500
  c.thesis_eval_examples = 50
  c.fake_num_examples = 64  # size of the 'fake' dataset.
  # The input convention the model was trained with, recorded in every
  # workdir so that prediction reproduces it. normalization 'unit': RGB / 255
  # in [0, 1]. crop 'dataset': whatever `name` does; 'mpii': the standard
  # box of side 200 * 1.25 * scale around the person centre, black padding
  # (also the PyTorch reference's, see launch/import_torch.py); 'thesis': the
  # keypoint box (triplet_pose/data/mpii_trb/crops.py).
  c.normalization = "unit"
  c.crop = "dataset"
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
  c.fill_value = 0.0  # image value (in [0, 1]) where the warp leaves the frame.
  return c


def model_config() -> ml_collections.ConfigDict:
  """The StackedHourglass and what it predicts."""
  c = ml_collections.ConfigDict()
  c.num_stacks = 8
  c.num_features = 256
  c.hourglass_depth = 4
  c.stem_features = 128  # the reference's; narrower is much faster on a CPU.
  # What the model predicts: 'joints' (16 heatmaps), 'contour' (26), or
  # 'combined': num_stacks joint stacks, then triplet_stacks contour stacks
  # fed with the image and the network's own joint heatmaps.
  c.target = "joints"
  c.triplet_stacks = 2
  c.dtype = "float32"  # computation dtype; 'bfloat16' on accelerators.
  c.remat = False
  # Stacks per iteration of the loop over the stacks (StackedHourglass.
  # scan_unroll): 1 compiles fastest; num_stacks gives the unrolled stacks'
  # CPU step time for a longer compile (benchmarks/compile_time.py).
  c.scan_unroll = 1
  return c


def heatmap_config() -> ml_collections.ConfigDict:
  """Target heatmaps (64x64) and the joint heatmaps fed to the triplet model."""
  c = ml_collections.ConfigDict()
  c.target_kernel = "gaussian"  # or 'pyramid' (the thesis).
  c.sigma = 1.0  # gaussian, in heatmap cells.
  c.radius = 5.0  # pyramid, in heatmap cells.
  c.target_peak = ml_collections.config_dict.placeholder(float)  # None: kernel default.
  # Loss weight of a pixel: 1 + foreground_weight * target (0: plain MSE, the
  # thesis; see train.squared_error).
  c.foreground_weight = 0.0
  c.input_kernel = "gaussian"  # joint heatmaps given to the triplet model.
  c.input_peak = 1.0
  return c


def optimizer_config() -> ml_collections.ConfigDict:
  """Adam with a learning-rate schedule and optional gradient clipping."""
  c = ml_collections.ConfigDict()
  c.learning_rate = 2.5e-4
  c.schedule = "constant"  # 'constant', 'step' or 'warmup_cosine'.
  c.warmup_steps = 0
  c.decay_steps = ()  # 'step': multiply by decay_factor at each of these steps.
  c.decay_factor = 0.1
  c.end_learning_rate_factor = 0.0  # 'warmup_cosine': final lr / peak lr.
  # The last steps of training, decaying linearly to zero after the schedule
  # above has ended (0: none).
  c.anneal_steps = 0
  c.b1 = 0.9
  c.b2 = 0.999
  c.grad_clip_norm = 0.0  # 0 disables clipping.
  return c


def phosphene_config() -> ml_collections.ConfigDict:
  """The simulator of the phosphene-space loss (`phosphene_loss_weight` > 0)."""
  c = ml_collections.ConfigDict()
  c.num_phosphenes = 1000
  c.resolution = 96  # simulator pixels (square).
  c.local_mean_radius = 2  # window of the differentiable keypoint decoder.
  c.line_width = 2.0  # skeleton / contour lines, simulator pixels.
  c.seed = 0
  return c


def base_config() -> ml_collections.ConfigDict:
  """Every field a training run reads, with the thesis joint model's values."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = model_config()
  c.heatmap = heatmap_config()
  c.optimizer = optimizer_config()
  c.input = input_config()
  c.augment = augment_config()
  # Input of the triplet model (model.target == 'contour'): the image plus joint
  # heatmaps from 'ground_truth', 'noisy_ground_truth' or 'predicted' (by the
  # joint model in `joint_workdir`).
  c.triplet_input = "ground_truth"
  c.triplet_noise_std = 4.0  # pixels of the input image, for noisy_ground_truth.
  c.joint_workdir = ""
  # Weight of the MSE between the phosphene images of the predicted and the
  # ground-truth pose, added to the heatmap loss (0 disables it).
  c.phosphene_loss_weight = 0.0
  c.phosphene = phosphene_config()
  c.num_train_steps = 100_000
  c.log_every_steps = 50
  c.eval_every_steps = 1000
  c.eval_batches = 8  # validation batches per evaluation during training.
  # What training evaluates (triplet_pose.evaluators.METRICS).
  c.eval_metrics = ("loss", "pckh", "panel")
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3  # newest N.
  c.keep_best_checkpoints = 1  # best N by `best_metric`.
  c.best_metric = "eval_loss"  # or e.g. 'pckh_Mean' with best_mode 'max'.
  c.best_mode = "min"
  c.distributed = False  # call jax.distributed.initialize() (multi-host).
  return c


_BOOLS = {"": True, "1": True, "true": True, "yes": True,
          "0": False, "false": False, "no": False}


def parse_arg(arg: str | None, **spec: Any) -> ml_collections.ConfigDict:
  """Parses the config argument (after ':' in --config) against typed defaults.

  `parse_arg('stacks=2,quick', stacks=8, quick=False)` gives
  `ConfigDict(stacks=2, quick=True)`: each value is converted to the type of
  its default; a bare name sets a bool to True.

  Raises:
    ValueError: for a name not in `spec` or a value its type rejects, naming
      the argument, what is allowed and the whole `arg`.
  """
  result = ml_collections.ConfigDict(spec)
  for item in filter(None, (arg or "").split(",")):
    name, has_value, text = item.partition("=")
    if name not in spec:
      raise ValueError(f"unknown config argument {name!r} in {arg!r}; "
                       f"known: {', '.join(sorted(spec)) or 'none'}")
    default = spec[name]
    try:
      if isinstance(default, bool):
        value = _BOOLS[text.lower()] if has_value else True
      elif has_value:
        value = type(default)(text)
      else:
        raise ValueError("it needs a value, as in name=value")
    except (KeyError, ValueError) as e:
      raise ValueError(f"config argument {name!r} in {arg!r} must be a "
                       f"{type(default).__name__}: {e}") from None
    result[name] = value
  return result
