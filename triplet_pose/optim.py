"""Adam with the learning-rate schedules of `config.optimizer`."""

from __future__ import annotations

import ml_collections
import optax

SCHEDULES = ("constant", "step", "warmup_cosine")


def learning_rate_schedule(config: ml_collections.ConfigDict,
                           num_train_steps: int) -> optax.Schedule:
  """The schedule named by `config.schedule`, with optional linear warmup.

  * constant: `learning_rate` after warmup.
  * step: multiplied by `decay_factor` at each step of `decay_steps`.
  * warmup_cosine: cosine decay from `learning_rate` to
    `learning_rate * end_learning_rate_factor` at `num_train_steps`.

  With `anneal_steps` > 0 the named schedule ends that many steps early and
  the last `anneal_steps` decay linearly from its final value to zero (a
  run of the shorter schedule resumes with the longer one unchanged up to
  its end).

  Raises:
    ValueError: for an unknown schedule, or `anneal_steps` not shorter than
      training after warmup.
  """
  lr, warmup = config.learning_rate, int(config.warmup_steps)
  anneal = int(config.anneal_steps)
  if anneal < 0 or (anneal and anneal >= num_train_steps - warmup):
    raise ValueError(f"config.optimizer.anneal_steps must be 0 or fewer than the "
                     f"{num_train_steps - warmup} steps after warmup, got {anneal}")
  main_steps = num_train_steps - warmup - anneal  # the named schedule's, after warmup
  if config.schedule == "constant":
    main = optax.constant_schedule(lr)
  elif config.schedule == "step":
    main = optax.piecewise_constant_schedule(
        lr, {int(s) - warmup: config.decay_factor for s in config.decay_steps})
  elif config.schedule == "warmup_cosine":
    main = optax.cosine_decay_schedule(
        lr, decay_steps=max(main_steps, 1), alpha=config.end_learning_rate_factor)
  else:
    raise ValueError(f"config.optimizer.schedule must be one of {SCHEDULES}, "
                     f"got {config.schedule!r}")
  if anneal:
    end = float(main(main_steps))
    main = optax.join_schedules([main, optax.linear_schedule(end, 0.0, anneal)],
                                boundaries=[main_steps])
  if warmup <= 0:
    return main
  return optax.join_schedules(
      [optax.linear_schedule(0.0, lr, warmup), main], boundaries=[warmup])


def create_optimizer(config: ml_collections.ConfigDict,
                     num_train_steps: int) -> optax.GradientTransformation:
  """Adam (`config.b1`, `config.b2`) with optional global-norm clipping."""
  schedule = learning_rate_schedule(config, num_train_steps)
  adam = optax.adam(schedule, b1=config.b1, b2=config.b2)
  if config.grad_clip_norm and config.grad_clip_norm > 0:
    return optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), adam)
  return adam
