"""Training of the joint and triplet models: state, pure steps, and the loop.

`train_step` and `eval_step` are pure functions of (state, batch, rng), jitted
with the state donated and the batch sharded over all devices
(`triplet_pose.parallel`). `train_and_evaluate` runs the loop: it resumes
from the newest checkpoint in the workdir, logs loss per stack, learning rate,
steps/s and ETA, evaluates, checkpoints, and stops with a clear message (and
the last good checkpoint intact) when the loss stops being finite.
"""

from __future__ import annotations

import functools
import pathlib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax.training import train_state

from triplet_pose import checkpointing
from triplet_pose import config_files
from triplet_pose import data
from triplet_pose.data import augment
from triplet_pose.data import scene_augment
from triplet_pose import evaluators
from triplet_pose import heatmaps
from triplet_pose import inputs
from triplet_pose import keypoints as kp
from triplet_pose import metric_writer
from triplet_pose import optim
from triplet_pose import parallel
from triplet_pose import phosphene_loss
from triplet_pose import workdir as workdir_lib
from triplet_pose.evaluators import multi_person
from triplet_pose.models import associative_embedding as ae


class TrainState(train_state.TrainState):
  """Step, params, optimizer state and the batch-norm running statistics."""
  batch_stats: Any = None


class NonFiniteLossError(FloatingPointError):
  """The loss or gradient became NaN or infinite."""


def create_train_state(config: ml_collections.ConfigDict, rng: jax.Array,
                       model: nn.Module | None = None) -> TrainState:
  """A freshly initialised TrainState (Xavier weights, Adam state)."""
  model = model or workdir_lib.create_model(config)
  size = config.input.image_size
  dummy = jnp.zeros((1, size, size, inputs.num_input_channels(config)), jnp.float32)
  init = jax.jit(functools.partial(model.init, train=False)).lower(rng, dummy)
  # Compiled without XLA's backend optimisations: the same values, run once
  # in milliseconds, compiled in about half the time on a 2-core CPU (one
  # threefry per parameter is most of the program).
  variables = init.compile({"xla_backend_optimization_level": 0})(rng, dummy)
  tx = optim.create_optimizer(config.optimizer, config.num_train_steps)
  return TrainState.create(apply_fn=model.apply, params=variables["params"],
                           batch_stats=variables["batch_stats"], tx=tx)


def squared_error(predictions: jax.Array, targets: jax.Array, weights: jax.Array,
                  *, foreground_weight: float = 0.0) -> jax.Array:
  """Weighted squared error (B, S, h, w, K) of every stack's heatmaps.

  Args:
    predictions: (B, S, h, w, K) heatmaps of every stack.
    targets: (B, h, w, K).
    weights: (B, K) per-keypoint weights (visibility).
    foreground_weight: pixels count 1 + foreground_weight * target. 0 is the
      plain MSE of the thesis and the reference; a positive weight (the demo
      uses 50) stops the background, 99% of the pixels, from holding a small
      model at the all-zero heatmap for thousands of steps.
  """
  squared = jnp.square(predictions - targets[:, None])
  if foreground_weight:
    squared = squared * (1.0 + foreground_weight * targets[:, None])
  return squared * weights[:, None, None, None, :]


def heatmap_loss(predictions: jax.Array, targets: jax.Array, weights: jax.Array,
                 *, foreground_weight: float = 0.0) -> jax.Array:
  """Mean squared error per stack; keypoints with weight 0 contribute nothing.

  Args: as `squared_error`.
  Returns:
    (S,) the mean over batch, pixels and keypoints of the weighted squared
    error, per stack (the reference's loss when every keypoint is visible and
    `foreground_weight` is 0).
  """
  return jnp.mean(squared_error(predictions, targets, weights,
                                foreground_weight=foreground_weight), axis=(0, 2, 3, 4))


def losses(config: ml_collections.ConfigDict, outputs: dict[str, jax.Array],
           batch: dict[str, jax.Array], *, simulator=None
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The training objective and its parts.

  The heatmap MSE of every stack of every keypoint set the model predicts
  (joint stacks first for a combined model) is summed; with
  `config.phosphene_loss_weight` > 0 the phosphene-space MSE of the last
  stack's pose (`triplet_pose.phosphene_loss`) is added.

  Args:
    config: the experiment config.
    outputs: the model's {set name: (B, S, h, w, K)} heatmaps.
    batch: the batch (its points and visibility per set).
    simulator: enables the phosphene-space loss.

  Returns:
    (total loss, {'loss_per_stack': (S,), 'phosphene_loss': ()}).
  """
  if config.model.target == ae.TARGET:  # several people: heatmaps and tags
    return ae.losses(config, outputs, batch, squared_error=squared_error)
  per_stack, predicted, truth, visible = [], {}, {}, {}
  for name, maps in outputs.items():
    kset = kp.get(name)
    target, weight = inputs.targets(config, batch, kset)
    per_stack.append(heatmap_loss(maps, target, weight,
                                  foreground_weight=config.heatmap.foreground_weight))
    if simulator is not None:
      coords = heatmaps.local_mean(maps[:, -1], radius=config.phosphene.local_mean_radius)
      predicted[name] = heatmaps.rescale_coordinates(
          coords, maps.shape[2], batch["image"].shape[1])
      truth[name], visible[name] = batch[name], batch[kset.visible_key]
  per_stack = jnp.concatenate(per_stack)
  parts = {"loss_per_stack": per_stack}
  total = jnp.sum(per_stack)
  if simulator is not None:
    render = functools.partial(phosphene_loss.phosphene_images, simulator,
                               visible=visible, image_size=batch["image"].shape[1],
                               line_width=config.phosphene.line_width)
    error = phosphene_loss.normalised_mse(render(predicted), render(truth))
    parts["phosphene_loss"] = error
    total = total + config.phosphene_loss_weight * error
  return total, parts


def train_step(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array,
               joint_variables: Any = None, *, config: ml_collections.ConfigDict,
               joint_predictor: inputs.JointPredictor | None = None,
               simulator=None) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimisation step on the sum over stacks of the heatmap MSE.

  `simulator` (a `phosphenes.Simulator`) enables the phosphene-space loss.
  """
  augment_rng, input_rng = jax.random.split(rng)
  if config.augment.enabled:
    # A scene batch (several persons per image) moves all its persons together.
    module = scene_augment if "persons_valid" in batch else augment
    batch = module.augment_batch(batch, augment_rng, config.augment)
  images = inputs.model_inputs(config, batch, input_rng,
                               joint_predictor=joint_predictor,
                               joint_variables=joint_variables)

  def loss_fn(params):
    variables = {"params": params, "batch_stats": state.batch_stats}
    outputs, updates = state.apply_fn(variables, images, train=True,
                                      mutable=["batch_stats"])
    total, parts = losses(config, outputs, batch, simulator=simulator)
    return total, (parts, updates["batch_stats"])

  (loss, (parts, batch_stats)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), **parts}
  return new_state, metrics


def eval_step(state: TrainState, batch: dict[str, jax.Array],
              joint_variables: Any = None, *, config: ml_collections.ConfigDict,
              joint_predictor: inputs.JointPredictor | None = None
              ) -> dict[str, Any]:
  """Loss sums and last-stack predictions on a (possibly padded) batch.

  Returns:
    loss_sum: (S,) per-stack loss summed over the valid examples.
    count: number of valid examples.
    heatmaps: {set name: (B, h, w, K)} last-stack heatmaps.
    keypoints: {set name: (B, K, 2)} decoded from them, in input pixels.
  """
  images = inputs.model_inputs(config, batch, jax.random.key(0),
                               joint_predictor=joint_predictor,
                               joint_variables=joint_variables)
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  outputs = state.apply_fn(variables, images, train=False)
  if config.model.target == ae.TARGET:
    return ae.eval_outputs(config, outputs, batch, squared_error=squared_error)
  valid = batch["valid"].astype(jnp.float32)
  per_example = []
  for name, maps in outputs.items():
    target, weight = inputs.targets(config, batch, kp.get(name))
    squared = squared_error(maps, target, weight,
                            foreground_weight=config.heatmap.foreground_weight)
    per_example.append(jnp.mean(squared, axis=(2, 3, 4)))  # (B, S)
  per_example = jnp.concatenate(per_example, axis=1)
  last = {name: maps[:, -1] for name, maps in outputs.items()}
  return {"loss_sum": jnp.sum(per_example * valid[:, None], axis=0),
          "count": jnp.sum(valid), "heatmaps": last,
          "keypoints": {name: heatmaps.decode_to_pixels(maps, images.shape[1:3])[0]
                        for name, maps in last.items()}}


def _joint_model_for_triplet_input(config: ml_collections.ConfigDict,
                                   workdir: pathlib.Path):
  """(predictor, variables) when the triplet model reads predicted joints.

  The joint checkpoint used is recorded in the workdir at the first start
  (`workdir_lib.recorded_joint_step`) and the same step is restored on every
  resume, so a resumed run trains on the same inputs even if the joint model
  trained on.
  """
  if config.model.target != kp.CONTOUR.name or config.triplet_input != "predicted":
    return None, None
  if not config.joint_workdir:
    raise ValueError("config.triplet_input='predicted' needs "
                     "--config.joint_workdir=<a trained joint model's workdir>")
  step = workdir_lib.recorded_joint_step(workdir, config.joint_workdir)
  joint = workdir_lib.load_model(config.joint_workdir, step=step, expect=kp.JOINTS.name)
  if jax.process_index() == 0 and step is None:
    workdir_lib.record_joint_step(workdir, joint)
  logging.info("triplet input: joints predicted by the model in %s at step %d",
               config.joint_workdir, joint.step)
  return functools.partial(joint.model.apply, train=False), joint.variables


def _check_finite(step: int, metrics: dict[str, Any], last_good: int | None) -> None:
  loss, grad_norm = jax.device_get((metrics["loss"], metrics["grad_norm"]))
  if not (np.isfinite(loss) and np.isfinite(grad_norm)):
    where = (f"the last good checkpoint (step {last_good}) is intact"
             if last_good is not None else "no checkpoint was written")
    raise NonFiniteLossError(
        f"non-finite loss at step {step} (loss={loss}, grad_norm={grad_norm}); "
        f"training stopped and {where}. Try a lower --config.optimizer."
        "learning_rate or --config.optimizer.grad_clip_norm=1.")


def create_evaluator(config: ml_collections.ConfigDict, eval_fn, mesh,
                     joint_variables: Any = None) -> evaluators.Evaluator:
  """The evaluator training runs: `config.eval_metrics` on `config.eval_batches`
  validation batches.

  The loss covers the whole global batch; PCKh and the panel read each
  process's share of it and PCKh gathers the shares of all processes.
  """
  if config.model.target == ae.TARGET:
    return multi_person.create_evaluator(config, eval_fn, mesh)

  def predict(state, batch):
    out = eval_fn(state, parallel.shard_batch(batch, mesh), joint_variables)
    local = jax.tree.map(lambda v: parallel.local_part(v, mesh),
                         {k: out[k] for k in ("heatmaps", "keypoints")})
    return {"loss_sum": jax.device_get(out["loss_sum"]),
            "count": jax.device_get(out["count"]), **local}

  def batches():
    return data.create_iterator(
        config.input, split=config.input.eval_split,
        batch_size=config.input.eval_batch_size, seed=config.seed,
        shuffle=False, repeat=False)

  sets = workdir_lib.keypoint_sets(config)
  return evaluators.Evaluator(
      predict, batches, lambda: evaluators.metrics_for(config.eval_metrics, sets),
      num_batches=config.eval_batches)


def _write_train_metrics(writer, step: int, total: int, host: dict[str, Any],
                         learning_rate: float, progress: dict[str, float]) -> None:
  scalars = {"train/loss": host["loss"],
             **{f"train/loss_stack_{s + 1}": v
                for s, v in enumerate(host["loss_per_stack"])},
             "train/grad_norm": host["grad_norm"],
             **({"train/phosphene_loss": host["phosphene_loss"]}
                if "phosphene_loss" in host else {}),
             "train/learning_rate": learning_rate,
             **{f"train/{k}": v for k, v in progress.items()}}
  writer.write_scalars(step, scalars)
  metric_writer.log_line(step, total, {
      "loss": host["loss"], "lr": learning_rate,
      "steps/s": scalars["train/steps_per_sec"], "eta_sec": scalars["train/eta_sec"]})


def _evaluate(evaluator: evaluators.Evaluator, state: TrainState, writer,
              step: int, total: int) -> dict[str, float]:
  """Runs the evaluator, writes its scalars and images; returns the scalars."""
  results = dict(evaluator.run(state))
  scalars = {k: v for k, v in results.items() if np.ndim(v) == 0}
  writer.write_scalars(step, {f"eval/{k}": v for k, v in scalars.items()})
  writer.write_images(step, {f"eval/{k}": v for k, v in results.items()
                             if np.ndim(v) == 3})
  shown = (("eval_loss", "eval_loss"), ("PCKh@0.5", "pckh_Mean"), ("mAP", "mp_map"))
  logging.info("step %d/%d%s", step, total,
               "".join(f" | {name} {scalars[key]:.4g}" for name, key in shown if key in scalars))
  return scalars


def _resume(config: ml_collections.ConfigDict, checkpointer: checkpointing.Checkpointer,
            mesh, init_rng: jax.Array):
  """(state, train iterator): restored from the newest intact checkpoint, or new."""
  state = parallel.replicate(create_train_state(config, init_rng), mesh)
  train_iter = data.create_iterator(
      config.input, split=config.input.train_split,
      batch_size=config.input.batch_size, seed=config.seed)
  if checkpointer.latest_step() is not None:
    state, input_state = checkpointer.restore(state)
    train_iter.set_state(parallel.own_process_state(input_state))
    logging.info("resumed from %s at step %d", checkpointer.directory, int(state.step))
  return state, train_iter


def _jit_steps(config: ml_collections.ConfigDict, joint_predictor):
  """The jitted train step (state donated) and eval step of `config`."""
  simulator = None
  if config.phosphene_loss_weight > 0:
    simulator = phosphene_loss.create_simulator(config.phosphene)
  step_fn = jax.jit(functools.partial(train_step, config=config,
                                      joint_predictor=joint_predictor,
                                      simulator=simulator),
                    donate_argnums=(0,))
  eval_fn = jax.jit(functools.partial(eval_step, config=config,
                                      joint_predictor=joint_predictor))
  return step_fn, eval_fn


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str | pathlib.Path) -> TrainState:
  """Trains `config` in `workdir`, resuming from its newest checkpoint."""
  # One piece on purpose: the loop's order (step, finite check, log,
  # evaluate, save) is what a resumed or failed run relies on.
  workdir = pathlib.Path(workdir)
  mesh = parallel.create_mesh()
  parallel.check_batch_size(config.input.batch_size, mesh)
  parallel.check_batch_size(config.input.eval_batch_size, mesh)
  writer = metric_writer.MetricWriter(workdir)
  checkpointer = checkpointing.Checkpointer(
      workdir, keep=config.keep_checkpoints,
      keep_best=config.keep_best_checkpoints, best_metric=config.best_metric,
      best_mode=config.best_mode)
  init_rng, step_rng = jax.random.split(jax.random.key(config.seed))
  state, train_iter = _resume(config, checkpointer, mesh, init_rng)
  config_files.save_config(config, workdir)  # after: a misfit config leaves the old one
  joint_predictor, joint_variables = _joint_model_for_triplet_input(config, workdir)
  if joint_variables is not None:
    joint_variables = parallel.replicate(joint_variables, mesh)
  step_fn, eval_fn = _jit_steps(config, joint_predictor)
  evaluator = create_evaluator(config, eval_fn, mesh, joint_variables)
  schedule = optim.learning_rate_schedule(config.optimizer, config.num_train_steps)
  start, total = int(state.step), config.num_train_steps
  progress = metric_writer.Progress(start, total)
  logging.info("training %s for steps %d..%d on %d device(s) in %s",
               config.model.target, start + 1, total, mesh.size, workdir)
  try:
    previous = None
    for step in range(start + 1, total + 1):
      batch = parallel.shard_batch(next(train_iter), mesh)
      state, metrics = step_fn(state, batch, jax.random.fold_in(step_rng, step),
                               joint_variables)
      # Check the previous step while this one runs: one scalar fetch per step
      # keeps the device busy yet stops within a step of the first NaN.
      if previous is not None:
        _check_finite(*previous, checkpointer.latest_step())
      previous = (step, metrics)
      is_last = step == total
      do_log = step % config.log_every_steps == 0 or is_last
      do_eval = step % config.eval_every_steps == 0 or is_last
      do_save = step % config.checkpoint_every_steps == 0 or do_eval
      if not (do_log or do_eval or do_save):
        continue
      _check_finite(step, metrics, checkpointer.latest_step())
      previous = None
      if do_log:
        _write_train_metrics(writer, step, total, jax.device_get(metrics),
                             schedule(step - 1), progress.update(step))
      eval_metrics = None
      if do_eval:
        eval_metrics = _evaluate(evaluator, state, writer, step, total)
      if do_save:
        checkpointer.save(step, state, parallel.gather_process_states(train_iter.get_state()),
                          metrics=eval_metrics)
  except Exception as e:
    # With several processes, a dead one makes the next collective fail here:
    # name it before the JAX distributed service ends this process.
    parallel.raise_if_process_lost(e)
    raise
  finally:
    # Also on error: let a pending asynchronous save complete, so the last
    # good checkpoint is on disk when the exception propagates.
    checkpointer.wait_until_finished()
    checkpointer.close()
    writer.close()
  return state
