"""The thesis's joint and triplet models with random weights, for timing them.

What a model costs does not depend on its weights, so the benchmarks that
time prediction build the thesis architectures (configs/joint.py,
configs/triplet.py) without trained workdirs.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

import common  # pylint: disable=unused-import  # puts the repository on sys.path
# Benchmarks compose experiment configs like launch/ does.
from configs import joint as joint_config
from configs import triplet as triplet_config
from triplet_pose import inference
from triplet_pose import inputs
from triplet_pose import keypoints as kp
from triplet_pose import workdir
from triplet_pose.prediction import predictor as predictor_lib


def predictor(stacks: tuple[int, int], *, batch_size: int, tiny: bool = False) -> Any:
  """A `Predictor` with random joint + triplet models of `stacks` stacks.

  Built attribute by attribute as `Predictor.__init__` does from workdirs.
  `tiny`: 32 features at 64 px instead of the thesis's 256 at 256 px.
  """
  loaded = []
  for get_config, num_stacks in ((joint_config.get_config, stacks[0]),
                                 (triplet_config.get_config, stacks[1])):
    config = get_config()
    config.model.num_stacks = num_stacks
    if tiny:
      config.model.num_features, config.model.stem_features = 32, 32
      config.input.image_size, config.input.heatmap_size = 64, 16
    model = workdir.create_model(config)
    size = config.input.image_size
    dummy = jax.numpy.zeros((1, size, size, inputs.num_input_channels(config)))
    variables = variables_like(jax.eval_shape(model.init, jax.random.key(0), dummy))
    loaded.append(workdir.LoadedModel(config, model, variables, "untrained", 0))
  p = object.__new__(predictor_lib.Predictor)
  p.models = inference.PoseModels(joint=loaded[0], triplet=loaded[1])
  p.image_size, p.batch_size, p.flip_test = p.models.image_size, batch_size, False
  p.variables = p.models.variables()
  p.infer = inference.make_inference_fn(p.models, flip_test=False)
  p.fill = predictor_lib.padding_fill(loaded[0].config.input)
  p.keypoint_names = (kp.JOINTS.name, kp.CONTOUR.name)
  return p


def variables_like(shapes: Any, seed: int = 0) -> Any:
  """Random weights of the given shapes, made on the host (batch-norm variances 1).

  Timing needs the architecture, not Xavier's scales, and host weights need
  no compiled `model.init` (one random-number program per parameter).
  """
  rng = np.random.default_rng(seed)
  def leaf(path, x):
    if jax.tree_util.keystr(path).endswith("['var']"):
      return jax.numpy.ones(x.shape, x.dtype)
    return jax.numpy.asarray(0.05 * rng.standard_normal(x.shape), x.dtype)
  return jax.tree_util.tree_map_with_path(leaf, shapes)
