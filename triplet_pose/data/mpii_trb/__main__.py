r"""Builds `mpii_trb` from the manual directory (what `tfds build` does, without its CLI).

  python -m triplet_pose.data.mpii_trb --config=joints --manual_dir=~/mpii [--data_dir=...]

`--config` may be joints, triplets, thesis_joints, thesis_triplets or all.
(`tfds build triplet_pose/data/mpii_trb --config=joints --manual_dir=...`
does the same, but the tfds 4.9 command line needs apache-beam installed.)
"""

from absl import app
from absl import flags
import tensorflow_datasets as tfds

from triplet_pose.data.mpii_trb import mpii_trb_dataset_builder

_CONFIG = flags.DEFINE_string("config", "joints", "builder config, or 'all'")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "where the MPII (+TRB) files are",
                                  required=True)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds data_dir (default ~/tensorflow_datasets)")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "delete and rebuild an existing build")


def main(argv):
  del argv
  names = ([c.name for c in mpii_trb_dataset_builder.Builder.BUILDER_CONFIGS]
           if _CONFIG.value == "all" else [_CONFIG.value])
  mode = (tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS if _OVERWRITE.value
          else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS)
  for name in names:
    builder = mpii_trb_dataset_builder.Builder(config=name, data_dir=_DATA_DIR.value)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=_MANUAL_DIR.value, download_mode=mode))
    print(f"mpii_trb/{name}: {dict((s, i.num_examples) for s, i in builder.info.splits.items())} "
          f"in {builder.data_dir}; skipped {dict(builder.info.metadata.get('skipped', {}))}")


if __name__ == "__main__":
  app.run(main)
