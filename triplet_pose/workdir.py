"""Models from configs, and trained models from their workdirs.

* `create_model`: the network a config describes (a `StackedHourglass` for
  one keypoint set, a `CombinedHourglass` for both).
* `load_model`: the config, network and variables of a `launch.train`
  workdir at a checkpoint step, as a `LoadedModel`.
* `record_joint_step` / `recorded_joint_step`: which joint checkpoint a
  triplet model trained on predicted joints reads (`joint_input.json`).

Training, evaluation, inference and prediction all build and load models
here; this module imports nothing above the models and checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Sequence

import jax.numpy as jnp
import ml_collections

from triplet_pose import checkpointing
from triplet_pose import config_files
from triplet_pose import keypoints as kp
from triplet_pose import storage
from triplet_pose.models import CombinedHourglass
from triplet_pose.models import StackedHourglass
from triplet_pose.models import associative_embedding

TARGETS = ("joints", "contour", "combined", associative_embedding.TARGET)
JOINT_INPUT_FILE = "joint_input.json"


def check_target(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError unless `config.model.target` is one of `TARGETS`."""
  if config.model.target not in TARGETS:
    raise ValueError(f"config.model.target must be one of {TARGETS}, got "
                     f"{config.model.target!r}")


def keypoint_sets(config: ml_collections.ConfigDict) -> tuple[kp.KeypointSet, ...]:
  """The keypoint sets the model of `config` predicts, in output order."""
  check_target(config)
  if config.model.target == "combined":
    return (kp.JOINTS, kp.CONTOUR)
  if config.model.target == associative_embedding.TARGET:
    return (kp.JOINTS,)
  return (kp.get(config.model.target),)


def create_model(config: ml_collections.ConfigDict
                 ) -> StackedHourglass | CombinedHourglass:
  """The network that `config.model` describes; it returns a dict of heatmaps."""
  check_target(config)
  m = config.model
  common = dict(num_features=m.num_features, hourglass_depth=m.hourglass_depth,
                stem_features=m.stem_features, dtype=jnp.dtype(m.dtype),
                remat=m.remat, scan_unroll=m.scan_unroll)
  if m.target == "combined":
    return CombinedHourglass(joint_stacks=m.num_stacks,
                             triplet_stacks=m.triplet_stacks, **common)
  if m.target == associative_embedding.TARGET:  # several people: heatmaps and tags
    tag_dim = associative_embedding.tag_dim(config.get("tags"))
    return associative_embedding.AssociativeEmbedding(num_stacks=m.num_stacks, tag_dim=tag_dim,
                                                      **common)
  (kset,) = keypoint_sets(config)
  return StackedHourglass(num_stacks=m.num_stacks, num_keypoints=kset.size,
                          output_key=kset.name, **common)


@dataclasses.dataclass
class LoadedModel:
  """A trained model restored from a workdir."""
  config: ml_collections.ConfigDict
  model: Any
  variables: Any
  workdir: str
  step: int

  @property
  def target(self) -> str:
    return self.config.model.target


def load_model(workdir: str | pathlib.Path, *, step: int | None = None,
               expect: str | Sequence[str] | None = None) -> LoadedModel:
  """Restores the model of a training workdir (newest checkpoint by default).

  Args:
    workdir: a `launch.train` workdir.
    step: the checkpoint step (default: newest).
    expect: the `model.target` (or targets) the caller can use.

  Raises:
    FileNotFoundError: no config.json or checkpoint in `workdir`.
    ValueError: the workdir's model does not predict `expect`.
  """
  config = config_files.load_config(workdir)
  expected = (expect,) if isinstance(expect, str) else tuple(expect or ())
  if expected and config.model.target not in expected:
    raise ValueError(f"{workdir} holds a model.target={config.model.target!r} model, "
                     f"expected {' or '.join(repr(e) for e in expected)}")
  checkpointer = checkpointing.Checkpointer(
      workdir, read_only=True, best_metric=config.get("best_metric", "eval_loss"))
  raw = checkpointer.restore_raw_state(step, keys=("step", "params", "batch_stats"))
  variables = {"params": raw["params"], "batch_stats": raw["batch_stats"]}
  # The state's own step: the one restored (the newest intact when None).
  return LoadedModel(config, create_model(config), variables, str(workdir),
                     int(raw["step"]))


def record_joint_step(workdir: str | pathlib.Path, joint: LoadedModel) -> None:
  """Writes which joint checkpoint feeds the triplet model of `workdir`."""
  path = pathlib.Path(workdir) / JOINT_INPUT_FILE
  path.parent.mkdir(parents=True, exist_ok=True)
  storage.write_text(path, json.dumps({"workdir": str(pathlib.Path(joint.workdir).absolute()),
                                       "step": joint.step}))


def recorded_joint_step(workdir: str | pathlib.Path,
                        joint_workdir: str | pathlib.Path) -> int | None:
  """The joint step recorded in `workdir` for `joint_workdir`, or None."""
  path = pathlib.Path(workdir) / JOINT_INPUT_FILE
  if not path.exists():
    return None
  recorded = json.loads(path.read_text())
  if recorded.get("workdir") != str(pathlib.Path(joint_workdir).absolute()):
    return None
  return int(recorded["step"])
