r"""The demo's small joint and triplet models on the synthetic figures.

  python -m launch.demo --workdir=/tmp/demo            # ~11 min on 2 CPU cores
  python -m launch.demo --workdir=/tmp/demo --quick    # ~2 min

or one model on its own:

  python -m launch.train --config=configs/demo.py:joint --workdir=/tmp/demo/joint
  python -m launch.train --config=configs/demo.py:triplet --workdir=/tmp/demo/triplet \
      --config.joint_workdir=/tmp/demo/joint

Arguments (comma separated): 'joint' (default), 'triplet' or 'combined';
'quick' for the short run; 'smoke' for a seconds-long run of the whole
pipeline (tests).
"""

from triplet_pose import config as config_lib


def get_config(arg: str | None = None):
  args = config_lib.parse_arg(arg, joint=False, triplet=False, combined=False,
                              quick=False, smoke=False)
  quick = args.quick
  c = config_lib.base_config()
  c.input.update(name="synthetic_figures/small" if quick else "synthetic_figures",
                 image_size=128, heatmap_size=32, batch_size=16, eval_batch_size=32)
  # Why these values (measured): README, "What lets a small model learn this".
  c.model.update(num_stacks=1, num_features=64, hourglass_depth=3, stem_features=32)
  c.heatmap.update(sigma=2.0, foreground_weight=50.0)
  c.optimizer.update(learning_rate=1.6e-2, schedule="warmup_cosine",
                     warmup_steps=10 if quick else 50, end_learning_rate_factor=0.5)
  if quick:
    c.num_train_steps = 60
  else:  # the joint model limits both: the triplet model learns in fewer steps
    c.num_train_steps = 300 if args.triplet else 2300
  c.log_every_steps = 25 if quick else 50
  c.eval_every_steps = c.num_train_steps if quick else 500
  c.eval_batches = 4
  c.checkpoint_every_steps = 100
  # Flips (the evaluation's flip test expects them) and colour jitter only.
  c.augment.update(enabled=True, rotation_degrees=0.0, scale_range=(1.0, 1.0),
                   translation_fraction=0.0, color_jitter=0.1)
  if args.smoke:
    c.input.name = "synthetic_figures/tiny"
    c.input.image_size, c.input.heatmap_size = 64, 16
    c.input.batch_size, c.input.eval_batch_size = 4, 8
    c.model.num_features, c.model.hourglass_depth = 16, 2
    c.optimizer.warmup_steps = 0
    c.num_train_steps = c.eval_every_steps = c.checkpoint_every_steps = 4
    c.log_every_steps = 2
    c.eval_batches = 1
  if args.triplet:
    c.model.target = "contour"
    c.triplet_input = "predicted"
  elif args.combined:
    c.model.target = "combined"
    c.model.triplet_stacks = 1
  return c
