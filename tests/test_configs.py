"""Every config in configs/ builds, and configs/thesis.py holds what the thesis states.

The thesis values are written out here from the thesis text
(../shared/seed/thesis.md), not imported from configs/thesis.py, so that a
changed value there fails. Configs are loaded as `launch.train` loads them
(ml_collections `config_flags`, 'path:argument' and '--config.x=y'
overrides). No model is built or trained: seconds on a CPU.
"""

from __future__ import annotations

import re
import shlex

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from conftest import REPO
from triplet_pose import config as config_lib
from triplet_pose import inputs
from triplet_pose import keypoints as kp
from triplet_pose.data import augment

# config_flags loads config files with importlib's deprecated load_module().
pytestmark = pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")

CONFIGS = sorted(p.name for p in (REPO / "configs").glob("*.py")
                 if p.name not in ("__init__.py", "common.py"))
# 'configs/x.py:ARG' as the docstrings and the docs spell it.
_SPEC = re.compile(r"configs/(\w+\.py)(?::([\w=.,-]+))?")


def load(spec: str, *overrides: str) -> ml_collections.ConfigDict:
  """The config of `--config=spec overrides...`, parsed as launch/ does it."""
  path, _, arg = spec.partition(":")
  argv = ["prog", f"--config={REPO / path}" + (f":{arg}" if arg else ""), *overrides]
  values = flags.FlagValues()
  # sys_argv: the overrides are looked up there (default: the real sys.argv).
  config_flags.DEFINE_config_file("config", flag_values=values, lock_config=True,
                                  sys_argv=argv)
  values(argv)
  return values.config


def documented_specs(text: str) -> list[str]:
  """Every 'configs/x.py[:arg]' that `text` mentions."""
  return sorted({f"configs/{name}" + (f":{arg}" if arg else "")
                 for name, arg in _SPEC.findall(text)})


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_builds_with_its_documented_arguments(name):
  module_text = (REPO / "configs" / name).read_text()
  specs = [f"configs/{name}"] + [s for s in documented_specs(module_text)
                                 if s.startswith(f"configs/{name}:")]
  for spec in specs:
    config = load(spec)
    assert isinstance(config, ml_collections.ConfigDict), spec
    if "model" in config:  # a training config: every field the library reads.
      missing = set(config_lib.base_config()) - set(config)
      assert not missing, f"{spec} lacks {sorted(missing)}"


@pytest.mark.parametrize("name", CONFIGS)
def test_unknown_config_argument_is_named(name):
  # What a user of launch/ sees: absl wraps the ValueError, keeping its text.
  with pytest.raises(flags.IllegalFlagValueError,
                     match="unknown config argument 'no_such_option'"):
    load(f"configs/{name}:no_such_option=1")


def test_thesis_config_rejects_bad_arguments():
  with pytest.raises(flags.IllegalFlagValueError, match="'joint' and 'triplet'"):
    load("configs/thesis.py:joint,triplet")
  with pytest.raises(flags.IllegalFlagValueError, match="'stacks'.*must be a int"):
    load("configs/thesis.py:stacks=eight")


def assert_thesis_values(c: ml_collections.ConfigDict, *, triplet: bool) -> None:
  """What the thesis states (section, page of its table of contents)."""
  # §3.1 p. 5: 8 stacks (joints), 5 stacks (triplets); §3.2 p. 6: 256
  # features, hourglass number 4; inputs 3 or 19 x 256 x 256, 64x64 heatmaps.
  assert c.model.target == ("contour" if triplet else "joints")
  assert c.model.num_stacks == (5 if triplet else 8)
  assert (c.model.num_features, c.model.hourglass_depth) == (256, 4)
  assert (c.input.image_size, c.input.heatmap_size) == (256, 64)
  # §4 p. 8: all 16 joints, 50 px padding, white: the thesis crops.
  assert c.input.name == ("mpii_trb/thesis_triplets" if triplet else "mpii_trb/thesis_joints")
  # §3.3 p. 7: 500 random training and 50 random test images per epoch, batch 4.
  assert c.input.thesis_sampling is True
  assert (c.input.thesis_train_examples, c.input.thesis_eval_examples) == (500, 50)
  assert c.input.batch_size == 4
  assert c.eval_batches * c.input.eval_batch_size == 50
  # §3.3 p. 7: pyramid heatmaps, nothing beyond 5 cells, x 1000; plain MSE.
  assert c.heatmap.target_kernel == "pyramid"
  assert c.heatmap.radius == 5.0
  assert c.heatmap.target_peak == 1000.0
  assert c.heatmap.foreground_weight == 0.0
  # §3.3 p. 7: the triplet input is the joint model's ground-truth heatmaps.
  assert c.triplet_input == "ground_truth"
  assert c.heatmap.input_kernel == "pyramid"
  assert c.heatmap.input_peak == 1000.0
  # §4 p. 8: "rotated and moved around in the grid", white padding.
  assert c.augment.enabled is True
  assert c.augment.rotation_degrees > 0
  assert c.augment.translation_fraction > 0
  assert c.augment.fill_value == 1.0
  # §3.3 p. 7: Adam.
  assert (c.optimizer.b1, c.optimizer.b2) == (0.9, 0.999)


@pytest.mark.parametrize("triplet", [False, True])
def test_thesis_config_holds_the_thesis_values(triplet):
  assert_thesis_values(load("configs/thesis.py:" + ("triplet" if triplet else "joint")),
                       triplet=triplet)
  if not triplet:
    assert_thesis_values(load("configs/thesis.py"), triplet=False)


def test_thesis_config_arguments():
  c = load("configs/thesis.py:triplet,stacks=2,epochs=3")
  assert (c.model.num_stacks, c.model.target) == (2, "contour")
  assert c.num_train_steps == 3 * 500 // 4


def _one_person(size: int) -> dict[str, np.ndarray]:
  """A batch of 2 examples: 16 joints and 26 contour points near the centre."""
  rng = np.random.default_rng(0)
  centre = (size - 1) / 2
  joints = centre + rng.uniform(-size / 5, size / 5, (2, kp.JOINTS.size, 2))
  contour = centre + rng.uniform(-size / 5, size / 5, (2, kp.CONTOUR.size, 2))
  return {"image": np.zeros((2, size, size, 3), np.uint8),
          "joints": joints.astype(np.float32),
          "joints_visible": np.ones((2, kp.JOINTS.size), np.float32),
          "contour": contour.astype(np.float32),
          "contour_visible": np.ones((2, kp.CONTOUR.size), np.float32)}


def test_thesis_triplet_input_is_the_pyramid_times_1000():
  config = load("configs/thesis.py:triplet")
  batch = _one_person(256)
  batch["joints"][:, 0] = (100.0, 120.0)  # r_ankle on a pixel centre
  x = inputs.model_inputs(config, batch, jax.random.key(0))
  assert x.shape == (2, 256, 256, 19)  # §3.2 p. 6: a 19x256x256 input.
  ankle = np.asarray(x[0, ..., 3])
  assert ankle[120, 100] == pytest.approx(1000.0)
  # The pyramid over the target's area: radius 5 cells = 20 input pixels,
  # linear in x on the joint's row, zero from the radius on.
  assert ankle[120, 110] == pytest.approx(500.0)
  assert ankle[120, 120] == 0.0
  assert ankle[125, 105] == pytest.approx(1000.0 * 0.75 * 0.75)
  # The targets: the same pyramid x 1000 on the 64x64 grid (radius 5 cells).
  batch["contour"][:, 0] = 41.5  # the centre of heatmap cell (10, 10)
  targets, _ = inputs.targets(config, {k: jnp.asarray(v) for k, v in batch.items()}, kp.CONTOUR)
  target = np.asarray(targets[0, ..., 0])
  assert target[10, 10] == pytest.approx(1000.0)
  assert target[10, 11] == pytest.approx(800.0)
  assert target[10, 15] == 0.0


def test_thesis_augmentation_rotates_and_moves_rigidly_on_white():
  config = load("configs/thesis.py:joint").augment
  batch = _one_person(64)
  out = jax.device_get(augment.augment_batch(batch, jax.random.key(3), config))
  assert np.all(out["joints_visible"] == 1), "the test's points must stay in the frame"
  moved = np.abs(out["joints"] - batch["joints"]).max(axis=(1, 2))
  assert np.all(moved > 1.0)
  # Rotation + translation only: every labelled distance is kept (a random
  # scale changes them, a mirror flip swaps left and right labels).
  def distances(p):
    return np.linalg.norm(p[:, :, None] - p[:, None, :], axis=-1)
  np.testing.assert_allclose(distances(out["joints"]), distances(batch["joints"]), atol=1e-3)
  # The black image turned: the corners it uncovers are white.
  assert np.isclose(out["image"], 1.0).all(axis=-1).any()


def _reproduce_section() -> str:
  training = (REPO / "docs" / "training.md").read_text()
  return training.split("## Reproduce the thesis", 1)[1].split("\n## ", 1)[0]


def _commands(section: str, module: str) -> list[list[str]]:
  """The `python -m <module>` commands of the section's code blocks, as argv."""
  blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
  lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
  return [shlex.split(line.split("#")[0]) for line in lines
          if line.startswith(f"python -m {module} ")]


def test_docs_reproduce_the_thesis_with_the_thesis_config(tmp_path):
  section = _reproduce_section()
  commands = _commands(section, "launch.train")
  assert len(commands) == 2, "one train command per model"
  for argv in commands:
    spec = next(a for a in argv if a.startswith("--config="))[len("--config="):]
    overrides = [a.replace("$MANUAL", str(tmp_path)) for a in argv
                 if a.startswith("--config.")]
    assert spec.startswith("configs/thesis.py"), argv
    c = load(spec, *overrides)
    assert_thesis_values(c, triplet=c.model.target == "contour")
    assert len(overrides) <= 1, f"the thesis config should hold every setting: {argv}"
  for spec in documented_specs(section):  # e.g. the variants the text names
    load(spec)
  evaluate = _commands(section, "launch.evaluate")
  assert evaluate, "the section evaluates the models"
  for argv in evaluate:  # --config only picks the evaluation data
    spec = next((a for a in argv if a.startswith("--config=")), None)
    if spec:
      load(spec[len("--config="):], *[a for a in argv if a.startswith("--config.")])
