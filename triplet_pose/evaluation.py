"""Evaluation of trained checkpoints: PCKh, model size and speed, per setting.

* `evaluate_models`: one pass over a split with flip-test inference
  (`triplet_pose.inference`), scoring PCKh in original image pixels with the
  `evaluators.Pckh` metric training uses, for every setting the models
  allow, side by side: the joint model; the triplet model fed with the joint
  model's predicted joints (the realistic setting); the triplet model fed
  with ground-truth joints (the thesis setting); or the combined model's
  joints and contour points. Each setting also carries the parameters of the
  network(s) it runs, their inference time per image, and the phosphene-space
  error of its predictions (`phosphene_loss.phosphene_errors`), and the
  workdir and checkpoint step of the model predicting its keypoints (the
  joint model of a pipeline for the joints). The results carry their
  `provenance` block (models, data, options, code, machine).
* `evaluate_checkpoints`: the same, from workdirs.

Tables and files of the results: `triplet_pose.results`.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
import tqdm

from triplet_pose import config as config_lib
from triplet_pose import data
from triplet_pose import evaluators
from triplet_pose import inference
from triplet_pose import keypoints as kp
from triplet_pose import phosphene_loss
from triplet_pose import provenance
from triplet_pose import workdir as workdir_lib

JOINT = "joint_model"
TRIPLET_PREDICTED = "triplet_predicted_joints"
TRIPLET_GT = "triplet_ground_truth_joints"
COMBINED_JOINTS = "combined_joints"
COMBINED_CONTOUR = "combined_contour"


@dataclasses.dataclass(frozen=True)
class EvalOptions:
  """How `evaluate_models` runs.

  Attributes:
    split: default `config.input.eval_split`.
    batch_size: default `config.input.eval_batch_size`.
    num_batches: stop after this many batches (None: the whole split).
    flip_test: average with the mirrored input's heatmaps.
    timing_batches: timed batches per setting (median; 0: no timing).
    seed: the iterator's seed.
    phosphene_error: also compare the phosphene images of the predicted and
      the true poses (adds 'phosphene_nmse' and 'phosphene_ssim').
    phosphene: its simulator (a `config.phosphene` section; None: the
      phosphene loss's default).
    progress: show a progress bar.
  """
  split: str | None = None
  batch_size: int | None = None
  num_batches: int | None = None
  flip_test: bool = True
  timing_batches: int = 5
  seed: int = 0
  phosphene_error: bool = True
  phosphene: ml_collections.ConfigDict | None = None
  progress: bool = False


@dataclasses.dataclass(frozen=True)
class Setting:
  """One row of the results: which keypoints, predicted by which networks.

  Attributes:
    keypoint_set: what is predicted and scored.
    models: the networks this setting runs (counted and timed).
    ground_truth_joints: the triplet model is fed with ground-truth joints.
  """
  keypoint_set: kp.KeypointSet
  models: inference.PoseModels
  ground_truth_joints: bool = False

  @property
  def model(self) -> workdir_lib.LoadedModel:
    """The model whose workdir and step the row names: the one predicting
    its keypoints (the joint model of a pipeline for its joints row)."""
    if self.keypoint_set is kp.JOINTS and self.models.joint is not None:
      return self.models.joint
    return self.models.models[-1]

  @property
  def input_model(self) -> workdir_lib.LoadedModel | None:
    """The joint model whose predicted joints feed the row's triplet model."""
    if self.keypoint_set is kp.CONTOUR and self.models.triplet is not None:
      return self.models.joint
    return None

  @property
  def run_key(self) -> tuple[Any, ...]:
    """Settings with equal keys share one inference function and timing."""
    return tuple(id(m) for m in self.models.models), self.ground_truth_joints


def settings_for(models: inference.PoseModels) -> dict[str, Setting]:
  """The settings `models` can be evaluated in, in table order."""
  PoseModels = inference.PoseModels  # pylint: disable=invalid-name
  joint, triplet, combined = models.joint, models.triplet, models.combined
  settings = {}
  if combined:
    both = PoseModels(combined=combined)
    settings[COMBINED_JOINTS] = Setting(kp.JOINTS, both)
    settings[COMBINED_CONTOUR] = Setting(kp.CONTOUR, both)
  if joint and triplet:
    pipeline = PoseModels(joint=joint, triplet=triplet)
    settings[JOINT] = Setting(kp.JOINTS, pipeline)
    settings[TRIPLET_PREDICTED] = Setting(kp.CONTOUR, pipeline)
  elif joint:
    settings[JOINT] = Setting(kp.JOINTS, PoseModels(joint=joint))
  if triplet:
    settings[TRIPLET_GT] = Setting(kp.CONTOUR, PoseModels(triplet=triplet),
                                   ground_truth_joints=True)
  return settings


def _inference_fns(settings: dict[str, Setting], flip_test: bool) -> dict[Any, Any]:
  fns = {}
  for setting in settings.values():
    if setting.run_key not in fns:
      fns[setting.run_key] = inference.make_inference_fn(
          setting.models, flip_test=flip_test,
          ground_truth_joints=setting.ground_truth_joints)
  return fns


def measure_speed(settings: dict[str, Setting], batch: dict[str, np.ndarray], *,
                  flip_test: bool, repeats: int,
                  compiled: dict | None = None) -> dict[str, float]:
  """Inference ms per image of every setting on `batch` (`inference.ms_per_image`).

  The networks a setting runs are timed on their own (the joint model's row
  does not include the triplet model run after it).

  Args:
    settings: from `settings_for`.
    batch: a batch with `image`, `joints` and `joints_visible`; its size is
      the batch size timed.
    flip_test: as in evaluation.
    repeats: timed batches (the median is reported).
    compiled: {`Setting.run_key`: jitted inference fn} that has already run
      on batches of this shape (no warm-up call).
  """
  compiled = dict(compiled or {})
  args = jax.device_put((batch["image"], batch["joints"], batch["joints_visible"]))
  measured, result = {}, {}
  for name, setting in settings.items():
    models = setting.models
    if setting.keypoint_set is kp.JOINTS and models.joint is not None:
      models = inference.PoseModels(joint=models.joint)  # the joint model alone
    key = (tuple(id(m) for m in models.models), setting.ground_truth_joints)
    if key not in measured:
      fn = compiled.get(key) or inference.make_inference_fn(
          models, flip_test=flip_test, ground_truth_joints=setting.ground_truth_joints)
      measured[key] = inference.ms_per_image(fn, jax.device_put(models.variables()), *args,
                                             batch_size=len(batch["image"]),
                                             repeats=repeats, warm_up=key not in compiled)
    result[name] = measured[key]
  return result


def _batches(input_config, options: EvalOptions, split: str):
  iterator = data.create_iterator(
      input_config, split=split, batch_size=options.batch_size or input_config.eval_batch_size,
      seed=options.seed, shuffle=False, repeat=False)
  if options.progress:
    iterator = tqdm.tqdm(iterator, desc=f"evaluating {split}", unit="batch",
                         total=options.num_batches)
  return iterator


def _score(settings: dict[str, Setting], batches, options: EvalOptions, fns: dict
           ) -> tuple[dict[str, evaluators.Pckh], dict[str, np.ndarray] | None]:
  """One pass over `batches`: every setting's PCKh metric, and the first batch."""
  pckh = {name: evaluators.Pckh(s.keypoint_set) for name, s in settings.items()}
  variables = {s.run_key: jax.device_put(s.models.variables()) for s in settings.values()}
  first_batch = None
  for i, batch in enumerate(batches):
    if options.num_batches is not None and i >= options.num_batches:
      break
    first_batch = batch if first_batch is None else first_batch
    outputs = {key: jax.device_get(fn(variables[key], batch["image"], batch["joints"],
                                      batch["joints_visible"]))
               for key, fn in fns.items()}
    for name, setting in settings.items():
      pckh[name].update(batch, outputs[setting.run_key])
  return pckh, first_batch


def evaluate_models(models: inference.PoseModels, input_config: ml_collections.ConfigDict,
                    options: EvalOptions = EvalOptions()) -> dict[str, Any]:
  """PCKh, parameters and speed of every available setting over one pass of a split.

  Args:
    models: the joint and/or triplet model, or a combined model.
    input_config: the `config.input` section naming the dataset.
    options: split, batches, flip test, timing, phosphene error.

  Returns:
    {'split', 'input', 'flip_test', 'persons', 'timing': {'device',
    'batch_size', 'timed_batches'} or None, 'settings': {setting:
    {'keypoints': 'joints'|'contour', 'workdir', 'step' (of the model
    predicting the row's keypoints; for the triplet fed with predicted
    joints also 'joint_workdir', 'joint_step'), 'params': int,
    'ms_per_image': float or None, **metrics.pckh_report(...),
    **phosphene_loss.phosphene_errors(...)}}, 'provenance':
    `provenance.provenance` of the models, the data and the options}.

  Raises:
    ValueError: when the data's image size differs from the models', or the
      split is empty.
  """
  split = options.split or input_config.eval_split
  size = models.image_size
  if input_config.image_size != size:
    raise ValueError(f"config.input.image_size={input_config.image_size} but the "
                     f"models were trained at {size}")
  settings = settings_for(models)
  fns = _inference_fns(settings, options.flip_test)
  pckh, first_batch = _score(settings, _batches(input_config, options, split), options, fns)
  if first_batch is None:
    raise ValueError(f"split {split!r} of input {input_config.name!r} yielded no examples")
  results = {"split": split, "input": input_config.name, "flip_test": options.flip_test,
             "timing": None, "settings": {}}
  speed = {}
  if options.timing_batches > 0:
    # The scoring pass compiled and ran these functions on this batch shape.
    speed = measure_speed(settings, first_batch, flip_test=options.flip_test,
                          repeats=options.timing_batches, compiled=fns)
    results["timing"] = {"device": inference.device_description(),
                         "batch_size": int(len(first_batch["image"])),
                         "timed_batches": int(options.timing_batches)}
  phosphene_config = options.phosphene or config_lib.phosphene_config()
  simulator = None
  if options.phosphene_error:
    simulator = phosphene_loss.create_simulator(phosphene_config)
    results["phosphenes"] = phosphene_config.to_dict()
  for name, setting in settings.items():
    report = pckh[name].report()
    if simulator is not None:
      rows = pckh[name].arrays()
      report.update(phosphene_loss.phosphene_errors(
          simulator, rows["pred_crop"], rows["gt_crop"], rows["visible"],
          keypoint_set=setting.keypoint_set, image_size=size,
          line_width=phosphene_config.line_width))
    results["persons"] = report["persons"]
    results["settings"][name] = {
        "keypoints": setting.keypoint_set.name, **_labels(setting),
        "params": _parameters(setting), "ms_per_image": speed.get(name), **report}
  results[provenance.KEY] = _provenance(models, input_config, options, split=split,
                                        persons=results["persons"])
  return results


def _labels(setting: Setting) -> dict[str, Any]:
  """The workdir and step of the model a row scores, and of its joint input."""
  labels = {"workdir": setting.model.workdir, "step": setting.model.step}
  if setting.input_model is not None:
    labels.update(joint_workdir=setting.input_model.workdir,
                  joint_step=setting.input_model.step)
  return labels


def _provenance(models: inference.PoseModels, input_config: ml_collections.ConfigDict,
                options: EvalOptions, *, split: str, persons: int) -> dict[str, Any]:
  """The results' provenance block: the models, the data and what was asked."""
  loaded = {role: model for role, model in (("joint", models.joint), ("triplet", models.triplet),
                                            ("combined", models.combined)) if model}
  asked = {k: v for k, v in dataclasses.asdict(options).items() if k != "progress"}
  config = {"input": input_config, "evaluation": {**asked, "split": split},
            "models": {role: model.config for role, model in loaded.items()}}
  return provenance.provenance(config=config, models=loaded,
                               dataset=provenance.dataset_info(input_config, split,
                                                               examples=persons))


def _parameters(setting: Setting) -> int:
  """Parameters of the networks a setting's prediction needs."""
  models = setting.models
  if setting.keypoint_set is kp.JOINTS and models.joint is not None:
    return inference.count_parameters(models.joint.variables)
  return models.num_parameters()


def evaluate_checkpoints(workdir: str | pathlib.Path, *,
                         config: ml_collections.ConfigDict | None = None,
                         joint_workdir: str | None = None, step: int | None = None,
                         joint_step: int | None = None,
                         options: EvalOptions = EvalOptions()) -> dict[str, Any]:
  """Restores the model of `workdir` (and a joint model for a triplet one) and evaluates.

  Args:
    workdir: a joint, triplet or combined training workdir.
    config: evaluation config; its `input` section picks the data (default:
      the workdir's own config), always the whole split (the thesis's 50
      sampled test images are a training-time figure).
    joint_workdir: for a triplet model, the joint model predicting its input
      joints (default: the triplet config's `joint_workdir`; without one only
      the ground-truth setting is evaluated).
    step: checkpoint step of `workdir` (default: newest).
    joint_step: checkpoint step of the joint workdir (default: the one the
      triplet model trained on, when recorded; else the newest).
    options: as in `evaluate_models`; the seed is the config's.

  Raises:
    ValueError: for an unknown model target, or a `joint_workdir` given
      with a model that is not a triplet model.
  """
  evaluated = workdir_lib.load_model(workdir, step=step,
                                     expect=("joints", "contour", "combined"))
  if evaluated.target != "contour" and joint_workdir:
    raise ValueError(f"joint_workdir is for a triplet model; {workdir} holds a "
                     f"model.target={evaluated.target!r} model")
  if evaluated.target == "joints":
    models = inference.PoseModels(joint=evaluated)
  elif evaluated.target == "combined":
    models = inference.PoseModels(combined=evaluated)
  else:
    joint_workdir = joint_workdir or evaluated.config.get("joint_workdir") or None
    if joint_workdir and joint_step is None:
      joint_step = workdir_lib.recorded_joint_step(workdir, joint_workdir)
    joint = (workdir_lib.load_model(joint_workdir, step=joint_step, expect="joints")
             if joint_workdir else None)
    if joint is None:
      logging.warning("no --joint_workdir: the triplet model is evaluated on "
                      "ground-truth joints only")
    models = inference.PoseModels(joint=joint, triplet=evaluated)
  input_config = ml_collections.ConfigDict((config or evaluated.config).input.to_dict())
  if input_config.get("thesis_sampling"):  # a checkpoint is scored on the whole split
    input_config.thesis_sampling = False
  options = dataclasses.replace(options, seed=(config or evaluated.config).seed)
  results = evaluate_models(models, input_config, options)
  results.update(workdir=str(workdir), step=evaluated.step, target=evaluated.target,
                 joint_workdir=joint_workdir,
                 joint_step=models.joint.step if evaluated.target == "contour" and models.joint
                 else None)
  return results
