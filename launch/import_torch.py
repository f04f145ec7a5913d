r"""Converts a PyTorch stacked-hourglass checkpoint (princeton-vl) into a workdir.

  pip install -e '.[torch]'
  python -m launch.import_torch --checkpoint=checkpoint.pth.tar \
      --num_stacks=8 --workdir=/tmp/hg8_pretrained

The workdir then holds `config.json` and an orbax checkpoint (step 0) that
`triplet_pose.train.load_trained_model` (and so launch.evaluate and
launch.predict) load like any trained model; `python -m launch.evaluate
--workdir=/tmp/hg8_pretrained` then evaluates it on the MPII validation split
(pass --data_dir / --manual_dir here, where mpii_trb lives). The config records the
reference's input convention: RGB in [0, 1] (`input.normalization='unit'`),
NHWC, 256x256 standard MPII crops (`input.crop='mpii'`: side 200 * scale of
the reference's annotation files, which hold the MPII scale * 1.25 and the
centre moved down by 15 * scale; black padding), 64x64 heatmaps, and the
dataset that makes such crops (`input.name='mpii_trb/joints'`).

Sizes (stacks, features, keypoints, depth, input channels) are read from the
checkpoint; --num_stacks, when given, must agree. torch is needed only here,
to read the file.
"""

from __future__ import annotations

import pathlib
from typing import Any

from absl import app
from absl import flags
from absl import logging

from configs import joint
from launch import common
from triplet_pose import checkpointing
from triplet_pose import config_files
from triplet_pose import optim
from triplet_pose import train
from triplet_pose import workdir as workdir_lib
from triplet_pose.models import torch_import

_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "The PyTorch checkpoint (e.g. checkpoint.pth.tar).")
_WORKDIR = flags.DEFINE_string("workdir", None, "The workdir to create.")
_NUM_STACKS = flags.DEFINE_integer(
    "num_stacks", None, "Stacks of the checkpoint (default: read from it).")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", "", "Recorded as config.input.data_dir (TFDS data_dir of mpii_trb).")
_MANUAL_DIR = flags.DEFINE_string(
    "manual_dir", "", "Recorded as config.input.manual_dir (the MPII files).")


def load_torch_checkpoint(path: str | pathlib.Path) -> Any:
  """Reads a PyTorch checkpoint on the CPU (tensors only, no pickled code).

  Raises:
    FileNotFoundError: when `path` does not exist.
    ValueError: when the file is truncated or not a PyTorch checkpoint.
    ImportError: when torch is not installed.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"no checkpoint file {path}")
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("reading a PyTorch checkpoint needs torch: "
                      "pip install -e '.[torch]'") from e
  try:
    return torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"cannot read PyTorch checkpoint {path} "
                     f"({type(e).__name__}: {e}); is the file complete?") from e


def import_checkpoint(checkpoint: str | pathlib.Path, workdir: str | pathlib.Path,
                      *, num_stacks: int | None = None, data_dir: str = "",
                      manual_dir: str = ""):
  """Writes `workdir` (config.json + orbax checkpoint) from a torch checkpoint.

  Args:
    checkpoint: path of the PyTorch checkpoint.
    workdir: directory to create; must not hold checkpoints yet.
    num_stacks: expected number of stacks (None: as in the checkpoint).
    data_dir: recorded as `config.input.data_dir`, so that launch.evaluate
      finds the `mpii_trb` dataset.
    manual_dir: recorded as `config.input.manual_dir`.

  Returns:
    The config written to the workdir.

  Raises:
    FileExistsError: when `workdir` already holds checkpoints.
    ValueError: for a checkpoint that is unreadable or does not match.
  """

  workdir = pathlib.Path(workdir)
  existing = workdir / checkpointing.CHECKPOINT_DIR
  if existing.exists() and any(existing.iterdir()):
    raise FileExistsError(f"{existing} already holds checkpoints; import into "
                          "a new --workdir")
  raw = load_torch_checkpoint(checkpoint)
  sizes = torch_import.infer_architecture(raw)
  if num_stacks is not None and num_stacks != sizes["num_stacks"]:
    raise ValueError(f"--num_stacks={num_stacks}, but {checkpoint} holds "
                     f"{sizes['num_stacks']} stacks (hgs.0 .. "
                     f"hgs.{sizes['num_stacks'] - 1})")
  variables = torch_import.variables_from_state_dict(
      raw, sizes["num_stacks"], sizes["num_features"], sizes["num_keypoints"],
      hourglass_depth=sizes["hourglass_depth"],
      num_input_channels=sizes["num_input_channels"])

  config = joint.get_config()
  kinds = {(3, 16): "joints", (19, 26): "contour"}
  shape = (sizes["num_input_channels"], sizes["num_keypoints"])
  if shape not in kinds:
    raise ValueError(f"{checkpoint}: {shape[0]} input channels and {shape[1]} "
                     "heatmaps match neither the joint model (3 -> 16) nor the "
                     "triplet model (19 -> 26)")
  config.model.target = kinds[shape]
  config.model.num_stacks = sizes["num_stacks"]
  config.model.num_features = sizes["num_features"]
  config.model.hourglass_depth = sizes["hourglass_depth"]
  config.input.image_size = 256
  config.input.heatmap_size = 64
  config.input.name = "mpii_trb/joints"  # the standard MPII crops.
  config.input.data_dir = data_dir
  config.input.manual_dir = manual_dir
  config.input.normalization = "unit"
  config.input.crop = "mpii"
  # The published models: Adam at 1e-3, batch 16 (for fine-tuning from here).
  config.optimizer.learning_rate = 1e-3
  config.input.batch_size = 16

  # The TrainState of `train.create_train_state`, holding the imported
  # variables (no random init of the full model needed).
  tx = optim.create_optimizer(config.optimizer, config.num_train_steps)
  state = train.TrainState.create(
      apply_fn=workdir_lib.create_model(config).apply, params=variables["params"],
      batch_stats=variables["batch_stats"], tx=tx)
  config_files.save_config(config, workdir)
  checkpointer = checkpointing.Checkpointer(workdir)
  checkpointer.save(0, state, {"position": 0})
  checkpointer.wait_until_finished()
  checkpointer.close()
  logging.info("imported %s (%d stacks, %d features, %d keypoints) into %s",
               checkpoint, sizes["num_stacks"], sizes["num_features"],
               sizes["num_keypoints"], workdir)
  return config


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  import_checkpoint(_CHECKPOINT.value, _WORKDIR.value, num_stacks=_NUM_STACKS.value,
                    data_dir=_DATA_DIR.value, manual_dir=_MANUAL_DIR.value)


if __name__ == "__main__":
  flags.mark_flags_as_required(["checkpoint", "workdir"])
  common.run(main, uses_tensorflow=False)
