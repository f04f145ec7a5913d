r"""Builds `synthetic_scenes` (what `tfds build` does, without its CLI).

  python -m triplet_pose.data.synthetic_scenes [--config=default|small|tiny|apart] [--data_dir=...]
  python -m triplet_pose.data.synthetic_scenes --num_train=8000 --num_validation=500 --seed=1

With --num_train the sizes (and seed) define the config named
`n<train>_<validation>_s<seed>`: input.name 'synthetic_scenes/n8000_500_s1'
reads (or builds) it.
"""

from absl import app
from absl import flags

from triplet_pose.data.synthetic_scenes import synthetic_scenes_dataset_builder as ssb

_CONFIG = flags.DEFINE_string("config", "default", "default, small, tiny or apart")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds data_dir (default ~/tensorflow_datasets)")
_NUM_TRAIN = flags.DEFINE_integer("num_train", None, "custom size instead of --config")
_NUM_VALIDATION = flags.DEFINE_integer("num_validation", 200, "with --num_train")
_SEED = flags.DEFINE_integer("seed", 0, "with --num_train")


def main(argv):
  del argv
  config = _CONFIG.value
  if _NUM_TRAIN.value is not None:
    config = ssb.config_from_name(f"n{_NUM_TRAIN.value}_{_NUM_VALIDATION.value}_s{_SEED.value}")
  builder = ssb.Builder(config=config, data_dir=_DATA_DIR.value)
  builder.download_and_prepare()
  sizes = {s: i.num_examples for s, i in builder.info.splits.items()}
  print(f"{builder.name}/{builder.builder_config.name}: {sizes} in {builder.data_dir}")


if __name__ == "__main__":
  app.run(main)
