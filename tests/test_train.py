"""Train and eval steps: overfitting, masking, schedules, triplet inputs, NaN stop."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import tiny
from triplet_pose import checkpointing
from triplet_pose import data
from triplet_pose import inputs
from triplet_pose import keypoints as kp
from triplet_pose import optim
from triplet_pose import train
from triplet_pose import transforms
from triplet_pose import workdir as workdir_lib


def _batch(config, seed=0):
  it = data.create_iterator(config.input, split="train",
                            batch_size=config.input.batch_size, seed=seed)
  return {k: jnp.asarray(v) for k, v in next(it).items()}


def test_tiny_model_overfits_a_fixed_batch():
  config = tiny.get_config("stacks=1")
  config.optimizer.learning_rate = 2e-3
  state = train.create_train_state(config, jax.random.key(0))
  batch = _batch(config)
  step = jax.jit(functools.partial(train.train_step, config=config), donate_argnums=0)
  losses = []
  for i in range(150):
    state, metrics = step(state, batch, jax.random.key(i))
    losses.append(float(metrics["loss"]))
  assert np.isfinite(losses).all()
  assert min(losses[-10:]) < losses[0] / 10, losses[::10]


def test_masked_keypoints_contribute_no_gradient():
  config = tiny.get_config()
  state = train.create_train_state(config, jax.random.key(0))
  batch = _batch(config)
  batch["joints_visible"] = batch["joints_visible"].at[:, 3].set(0.0)
  moved = dict(batch, joints=batch["joints"].at[:, 3].add(17.0))
  grads = []
  for b in (batch, moved):
    def loss(params, b=b):
      images = inputs.model_inputs(config, b, jax.random.key(0))
      target, weight = inputs.targets(config, b, kp.JOINTS)
      pred, _ = state.apply_fn({"params": params, "batch_stats": state.batch_stats},
                               images, train=True, mutable=["batch_stats"])
      return train.heatmap_loss(pred["joints"], target, weight).sum()
    grads.append(jax.grad(loss)(state.params))
  for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
    np.testing.assert_array_equal(a, b)
  # ...while moving a visible joint does change the gradient.
  pred = jnp.ones((2, 2, 16, 16, 16))
  target = jnp.zeros((2, 16, 16, 16))
  weight = jnp.ones((2, 16)).at[:, 3].set(0)
  g = jax.grad(lambda p: train.heatmap_loss(p, target, weight).sum())(pred)
  assert np.all(g[..., 3] == 0) and np.all(g[..., 4] != 0)


def test_heatmap_loss_is_mse_per_stack():
  rng = np.random.default_rng(0)
  pred = rng.normal(size=(2, 3, 4, 4, 5)).astype(np.float32)
  target = rng.normal(size=(2, 4, 4, 5)).astype(np.float32)
  loss = train.heatmap_loss(pred, target, np.ones((2, 5), np.float32))
  expected = ((pred - target[:, None]) ** 2).mean(axis=(0, 2, 3, 4))
  np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_foreground_weight_weighs_pixels_by_their_target():
  target = np.zeros((1, 4, 4, 2), np.float32)
  target[0, 1, 2, 0] = 0.5
  pred = np.full((1, 1, 4, 4, 2), 0.1, np.float32)
  weight = np.ones((1, 2), np.float32)
  plain = train.heatmap_loss(pred, target, weight)
  weighted = train.heatmap_loss(pred, target, weight, foreground_weight=20.0)
  squared = (pred[0, 0] - target[0]) ** 2
  # Only the one foreground pixel changes: (1 + 20 * 0.5) times its error.
  expected = (squared.sum() + 10.0 * squared[1, 2, 0]) / squared.size
  np.testing.assert_allclose(weighted, [expected], rtol=1e-6)
  assert weighted[0] > 4 * plain[0]


def test_schedules():
  c = tiny.get_config().optimizer
  c.learning_rate, c.warmup_steps = 1.0, 10
  c.schedule = "constant"
  s = optim.learning_rate_schedule(c, 100)
  assert s(0) == 0 and s(5) == pytest.approx(0.5) and s(50) == 1.0
  c.schedule, c.warmup_steps, c.decay_steps, c.decay_factor = "step", 0, (30, 60), 0.1
  s = optim.learning_rate_schedule(c, 100)
  assert [float(s(i)) for i in (29, 30, 59, 60)] == pytest.approx([1, 0.1, 0.1, 0.01])
  c.schedule, c.warmup_steps, c.end_learning_rate_factor = "warmup_cosine", 10, 0.0
  s = optim.learning_rate_schedule(c, 110)
  assert s(10) == pytest.approx(1.0) and s(60) == pytest.approx(0.5) and s(110) == pytest.approx(0)
  c.schedule = "linear"
  with pytest.raises(ValueError, match="schedule"):
    optim.learning_rate_schedule(c, 10)


def test_anneal_steps_extend_a_schedule_unchanged_then_decay_to_zero():
  c = tiny.get_config().optimizer
  c.learning_rate, c.warmup_steps = 1.0, 10
  c.schedule, c.end_learning_rate_factor = "warmup_cosine", 0.3
  short = optim.learning_rate_schedule(c, 110)
  c.anneal_steps = 40
  long = optim.learning_rate_schedule(c, 150)
  # A run of the short schedule resumed with the long one sees the same rates.
  assert [float(long(i)) for i in (0, 5, 60, 109, 110)] == pytest.approx(
      [float(short(i)) for i in (0, 5, 60, 109, 110)])
  assert float(long(130)) == pytest.approx(0.15) and float(long(150)) == 0.0
  for bad in (-1, 140):
    c.anneal_steps = bad
    with pytest.raises(ValueError, match="anneal_steps must be 0 or fewer than the 140 steps"):
      optim.learning_rate_schedule(c, 150)


def test_gradient_clipping_clips_before_adam():
  c = tiny.get_config().optimizer
  c.learning_rate = 0.1

  def run(tx):
    params = {"w": jnp.ones(2)}
    state = tx.init(params)
    out = []
    for g in ([1e3, 1.0], [1.0, 1.0]):
      updates, state = tx.update({"w": jnp.asarray(g)}, state, params)
      out.append(updates["w"])
    return np.asarray(out)

  c.grad_clip_norm = 1e-3
  clipped = run(optim.create_optimizer(c, 10))
  expected = run(optax.chain(optax.clip_by_global_norm(1e-3), optax.adam(0.1)))
  np.testing.assert_allclose(clipped, expected, rtol=1e-6)
  c.grad_clip_norm = 0.0
  assert not np.allclose(run(optim.create_optimizer(c, 10)), clipped, rtol=1e-3)


@pytest.mark.parametrize("mode", ["ground_truth", "noisy_ground_truth"])
def test_triplet_inputs_have_19_channels(mode):
  config = tiny.get_config("target=contour")
  config.triplet_input = mode
  batch = _batch(config)
  x = inputs.model_inputs(config, batch, jax.random.key(0))
  assert x.shape == (4, 64, 64, 19)
  assert inputs.num_input_channels(config) == 19
  heat = x[..., 3:]
  gt = inputs.joint_input_heatmaps(config, batch["joints"], batch["joints_visible"],
                                   image_size=64)
  if mode == "ground_truth":
    np.testing.assert_allclose(heat, gt)
  else:
    assert not np.allclose(heat, gt)
  target, weight = inputs.targets(config, batch, kp.CONTOUR)
  assert target.shape == (4, 16, 16, 26) and weight.shape == (4, 26)


def test_predicted_triplet_input_uses_the_joint_model():
  config = tiny.get_config("target=contour")
  config.triplet_input = "predicted"
  batch = _batch(config)
  with pytest.raises(ValueError, match="joint model"):
    inputs.model_inputs(config, batch, jax.random.key(0))
  joint_config = tiny.get_config()
  joint_state = train.create_train_state(joint_config, jax.random.key(1))
  predictor = functools.partial(joint_state.apply_fn, train=False)
  variables = {"params": joint_state.params, "batch_stats": joint_state.batch_stats}
  x = inputs.model_inputs(config, batch, jax.random.key(0), joint_predictor=predictor,
                          joint_variables=variables)
  joints, _ = inputs.predict_joints(predictor, variables,
                                    transforms.to_float_image(batch["image"]), image_size=64)
  expected = inputs.joint_input_heatmaps(config, joints, jnp.ones(joints.shape[:-1]),
                                         image_size=64)
  np.testing.assert_allclose(x[..., 3:], expected, rtol=1e-5, atol=1e-6)
  state = train.create_train_state(config, jax.random.key(0))
  step = jax.jit(functools.partial(train.train_step, config=config,
                                   joint_predictor=predictor))
  _, metrics = step(state, batch, jax.random.key(0), variables)
  assert np.isfinite(metrics["loss"])


def test_eval_step_ignores_padding():
  config = tiny.get_config()
  state = train.create_train_state(config, jax.random.key(0))
  batch = _batch(config)
  out = train.eval_step(state, batch, config=config)
  half = dict(batch, valid=batch["valid"].at[2:].set(False))
  out_half = train.eval_step(state, half, config=config)
  assert float(out["count"]) == 4 and float(out_half["count"]) == 2
  first_two = {k: v[:2] for k, v in batch.items()}
  np.testing.assert_allclose(out_half["loss_sum"],
                             train.eval_step(state, first_two, config=config)["loss_sum"],
                             rtol=1e-5)
  assert out["heatmaps"]["joints"].shape == (4, 16, 16, 16)


def test_non_finite_loss_stops_with_the_step_and_keeps_the_checkpoint(tmp_path, monkeypatch):
  config = tiny.get_config()
  config.num_train_steps = 12
  config.checkpoint_every_steps = 5
  config.eval_every_steps = 100
  real = data.create_iterator

  class Poisoned:
    """Yields NaN joints from the 8th batch on."""

    def __init__(self, it):
      self._it, self.n = it, 0

    def __next__(self):
      batch = next(self._it)
      self.n += 1
      if self.n >= 8:
        batch["joints"] = np.full_like(batch["joints"], np.nan)
      return batch

    def get_state(self):
      return self._it.get_state()

    def set_state(self, s):
      self._it.set_state(s)

  def create(*args, split, **kwargs):
    it = real(*args, split=split, **kwargs)
    return Poisoned(it) if split == "train" else it

  monkeypatch.setattr(data, "create_iterator", create)
  with pytest.raises(train.NonFiniteLossError, match=r"step 8 .*checkpoint \(step 5\) is intact"):
    train.train_and_evaluate(config, tmp_path)
  ckpt = checkpointing.Checkpointer(tmp_path, read_only=True)
  assert ckpt.all_steps() == [5]
  raw = ckpt.restore_raw_state()
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(raw["params"]))


def test_combined_model_trains_joints_then_contour_end_to_end():
  config = tiny.get_config("target=combined")
  state = train.create_train_state(config, jax.random.key(0))
  batch = _batch(config)
  step = jax.jit(functools.partial(train.train_step, config=config))
  new_state, metrics = step(state, batch, jax.random.key(0))
  assert metrics["loss_per_stack"].shape == (config.model.num_stacks + config.model.triplet_stacks,)
  # The contour loss reaches the joint stacks: its gradient alone is non-zero there.
  images = inputs.model_inputs(config, batch, jax.random.key(0))

  def contour_loss(params):
    variables = {"params": params, "batch_stats": state.batch_stats}
    outputs, _ = state.apply_fn(variables, images, train=True, mutable=["batch_stats"])
    target, weight = inputs.targets(config, batch, kp.CONTOUR)
    return train.heatmap_loss(outputs["contour"], target, weight).sum()

  g = jax.grad(contour_loss)(state.params)
  assert float(jnp.abs(g["joint"]["stacks"]["out"]["kernel"][1]).sum()) > 0  # last joint stack
  out = train.eval_step(new_state, batch, config=config)
  assert out["heatmaps"]["joints"].shape[-1] == 16
  assert out["heatmaps"]["contour"].shape[-1] == 26
  assert out["keypoints"]["contour"].shape == (4, 26, 2)


def test_phosphene_loss_is_small_for_the_true_pose_and_trains_the_model():
  from triplet_pose import heatmaps, phosphene_loss
  config = tiny.get_config()
  config.phosphene_loss_weight = 1.0
  config.phosphene.resolution, config.phosphene.num_phosphenes = 32, 300
  sim = phosphene_loss.create_simulator(config.phosphene)
  batch = _batch(config)
  target, _ = inputs.targets(config, batch, kp.JOINTS)
  perfect = jnp.repeat(target[:, None], 2, axis=1)
  _, parts = train.losses(config, {"joints": perfect}, batch, simulator=sim)
  shifted = jnp.roll(perfect, 3, axis=3)
  _, wrong = train.losses(config, {"joints": shifted}, batch, simulator=sim)
  assert float(parts["phosphene_loss"]) < 0.25 * float(wrong["phosphene_loss"])
  grad = jax.grad(lambda p: train.losses(
      config, {"joints": p}, batch, simulator=sim)[1]["phosphene_loss"])(shifted)
  assert float(jnp.abs(grad).sum()) > 0
  state = train.create_train_state(config, jax.random.key(0))
  step = jax.jit(functools.partial(train.train_step, config=config, simulator=sim))
  _, metrics = step(state, batch, jax.random.key(0))
  assert np.isfinite(metrics["phosphene_loss"]) and metrics["phosphene_loss"] > 0
  assert heatmaps.local_mean(target).shape == (4, 16, 2)


def test_triplet_resume_reads_the_recorded_joint_checkpoint(tmp_path, workdirs):
  import shutil  # pylint: disable=g-import-not-at-top
  joint_dir = tmp_path / "joint"
  shutil.copytree(workdirs["joint"], joint_dir)
  config = tiny.get_config("target=contour")
  config.triplet_input, config.joint_workdir = "predicted", str(joint_dir)
  _, first = train._joint_model_for_triplet_input(config, tmp_path / "triplet")
  assert workdir_lib.recorded_joint_step(tmp_path / "triplet", joint_dir) == 2
  # The joint model trains on: a newer checkpoint with other weights.
  newer = train.create_train_state(tiny.get_config("stacks=1"), jax.random.key(1))
  checkpointer = checkpointing.Checkpointer(joint_dir)
  checkpointer.save(5, newer.replace(step=5), {"position": 5})
  checkpointer.wait_until_finished()
  checkpointer.close()
  _, resumed = train._joint_model_for_triplet_input(config, tmp_path / "triplet")
  jax.tree.map(np.testing.assert_array_equal, first, resumed)
  # A new triplet run takes the newest joint checkpoint.
  _, fresh = train._joint_model_for_triplet_input(config, tmp_path / "other")
  assert workdir_lib.recorded_joint_step(tmp_path / "other", joint_dir) == 5
  assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(fresh["params"]),
                                                       jax.tree.leaves(first["params"])))
