r"""Every setting of the thesis (Eldaw 2021, ../shared/seed/thesis.md), one command per model.

  python -m triplet_pose.data.mpii_trb --config=all --manual_dir=$MANUAL   # once
  python -m launch.train --config=configs/thesis.py:joint --workdir=/tmp/thesis_joint \
      --config.input.manual_dir=$MANUAL
  python -m launch.train --config=configs/thesis.py:triplet --workdir=/tmp/thesis_triplet \
      --config.input.manual_dir=$MANUAL

Arguments (comma separated): 'joint' (default) or 'triplet'; 'stacks=N'
(default: the thesis's 8 for the joint model, 5 for the triplet model);
'epochs=N' (default 5000, see `EPOCHS`). Every field can still be
overridden (`--config.augment.rotation_degrees=30`).

Each value below quotes the thesis (section, page of its table of contents).
Where the thesis is silent, the comment says so and names what is used; most
such values come from the thesis's own code, which its footnote 1 links
(github.com/yeldaw/image-to-phosphene, MXNet, last commit b6920fe).
"""

from __future__ import annotations

import ml_collections

from configs import common
from triplet_pose import config as config_lib

# §3.1 (p. 5): "in which case it uses 8 stacks, or triplet estimation, in
# which case 5 stacks are used".
STACKS = {"joints": 8, "contour": 5}
# §3.3 (p. 7): "For the training 500 images were chosen, with batch size 4, at
# random from the training images per epoch [...] For the test set 50 images
# were used for every epoch."
TRAIN_IMAGES_PER_EPOCH = 500
TEST_IMAGES_PER_EPOCH = 50
BATCH_SIZE = 4
STEPS_PER_EPOCH = TRAIN_IMAGES_PER_EPOCH // BATCH_SIZE  # 125
# The thesis does not say how many epochs it trained. Its code loops
# `for epoch in range(1, 5001)` (train.py, train_network / train_triplet):
# 5000 epochs = 625,000 steps of batch 4, the upper bound of the thesis runs.
EPOCHS = 5000
# §3.3 (p. 7): "the weighted values of the heatmaps were artificially
# increased a thousandfold".
HEATMAP_PEAK = 1000.0
# §3.3 (p. 7): "no more values being assigned for any blocks more than 5
# pixels away" (pixels of the 64x64 heatmap).
HEATMAP_RADIUS = 5.0


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The thesis joint model (default) or triplet model ('triplet').

  Raises:
    ValueError: an unknown argument (named), or both 'joint' and 'triplet'.
  """
  args = config_lib.parse_arg(arg, joint=False, triplet=False, stacks=0, epochs=EPOCHS)
  if args.joint and args.triplet:
    raise ValueError(f"configs/thesis.py: 'joint' and 'triplet' exclude each other (in {arg!r})")
  target = "contour" if args.triplet else "joints"
  if args.stacks < 0 or args.epochs < 1:
    raise ValueError(f"configs/thesis.py: stacks must be >= 1 (0: the thesis's) and "
                     f"epochs >= 1, got {arg!r}")
  c = common.thesis_config(target=target, num_stacks=args.stacks or STACKS[target])
  _model(c.model)
  _data(c.input, triplet=args.triplet)
  _heatmaps(c.heatmap)
  # §3.3 (p. 7): "it also uses the heatmaps used as the ground truth of the
  # joint model" (the triplet model's input joints are ground truth).
  c.triplet_input = "ground_truth"
  _augmentation(c.augment)
  _optimizer(c.optimizer)
  _schedule(c, epochs=args.epochs)
  return c


def _model(m: ml_collections.ConfigDict) -> None:
  # §3.2 (p. 6): "creating a 256x64x64 tensor, which is a constant input and
  # output size between all following layers".
  m.num_features = 256
  # §3.2 (p. 6): "the first hourglass layer always has 4 as its supplied number".
  m.hourglass_depth = 4
  # Appendix A (p. 17): the initial layer's residual blocks output 128
  # channels (Residual-14, Residual-25: (4, 128, ...)) before the last one's 256.
  m.stem_features = 128
  # Silent on precision: MXNet's float32 default (train.py sets no dtype).
  m.dtype = "float32"


def _data(i: ml_collections.ConfigDict, *, triplet: bool) -> None:
  # §4 (p. 8): "Only images supplying all 16 different joint locations of a
  # person [...] were kept", "a padding of 50 pixels [...] The images were
  # scaled so the largest dimension was 256 pixels [...] a white-padding was
  # applied": the `thesis_*` variants of mpii_trb (crops.py, crop 'thesis');
  # the triplet model trains on the persons that MPII-TRB annotates (§4:
  # "the augmented dataset of the MPII Human Pose dataset[16]").
  i.name = "mpii_trb/thesis_triplets" if triplet else "mpii_trb/thesis_joints"
  i.crop = "thesis"  # recorded for prediction: white-padded keypoint box.
  # §3.2 (p. 6): a 3x256x256 (joint) or 19x256x256 (triplet) input;
  # §3.3 (p. 7): heatmaps "on a 64x64 grid".
  i.image_size = 256
  i.heatmap_size = 64
  # §3.3 (p. 7): 500 random training and 50 random test images per epoch,
  # batch size 4 (quoted at the top). The thesis drew 50 new test images
  # each epoch; the evaluator here restarts the same seeded 50 each time.
  i.batch_size = BATCH_SIZE
  i.thesis_sampling = True
  i.thesis_train_examples = TRAIN_IMAGES_PER_EPOCH
  i.thesis_eval_examples = TEST_IMAGES_PER_EPOCH
  # Silent on test batches: 5 batches of 10 cover the 50 test images.
  i.eval_batch_size = 10
  # Silent on normalisation; its code: mxnet ToTensor, RGB / 255 in [0, 1].
  i.normalization = "unit"


def _heatmaps(h: ml_collections.ConfigDict) -> None:
  # §3.3 (p. 7): "assigning weighted values on a 64x64 grid according to their
  # location in relation to the actual joint's location, with no more values
  # being assigned for any blocks more than 5 pixels away" and "increased a
  # thousandfold": the pyramid (r - |dx|)(r - |dy|) / r^2 x 1000, r = 5 (its
  # code: CustomDataset.create_heatmap), for the targets of both models
  # (§3.3: "26 heatmaps [...] generated in the same way as with the joint model").
  h.target_kernel = "pyramid"
  h.radius = HEATMAP_RADIUS
  h.target_peak = HEATMAP_PEAK
  # §3.3 (p. 7): "For the loss the MSE-error was used": no foreground weight.
  h.foreground_weight = 0.0
  # §3.3 (p. 7): the triplet model's input "uses the heatmaps used as the
  # ground truth of the joint model": the same pyramid x 1000, rendered at
  # 256x256 over the same image area (radius 5 cells = 20 input pixels,
  # inputs.joint_input_heatmaps). The thesis's code instead drew r = 5 input
  # pixels at 256x256 (CustomDataset.__getitem__, make_heatmap(..., 256)).
  h.input_kernel = "pyramid"
  h.input_peak = HEATMAP_PEAK


def _augmentation(a: ml_collections.ConfigDict) -> None:
  # §4 (p. 8): "the images were rotated and moved around in the grid to
  # augment the dataset [...] The joint locations were all adjusted
  # accordingly [...] In the end a white-padding was applied".
  a.enabled = True
  # Silent on the angles. Its code made rotated copies by multiples of 90
  # degrees (preprocessing.pad_image: transpose + flip; main.modify_images:
  # both axes flipped, 180); here a uniform angle in [-180, 180] covers them.
  a.rotation_degrees = 180.0
  # Silent on the distance. Its code moved the crop into a corner of the
  # white 256x256 canvas (pad_image, 'bottom-right'), i.e. within the white
  # margin; up to 10% of 256 (25.6 px) in x and y, about the 50 px padding
  # after scaling, keeps the keypoints in the frame.
  a.translation_fraction = 0.1
  # Not in the thesis: no random scaling (the crop is scaled only to fit 256),
  # no mirror flip (its copies are rotations), no colour jitter.
  a.scale_range = (1.0, 1.0)
  a.flip_probability = 0.0
  a.color_jitter = 0.0
  # §4 (p. 8): "a white-padding was applied".
  a.fill_value = 1.0


def _optimizer(o: ml_collections.ConfigDict) -> None:
  # §3.3 (p. 7): "the parameters were updated using the adam optimiser".
  # Silent on the learning rate. Its code (train.py create_trainer):
  # mx.optimizer.Adam (lr 1e-3: MXNet's default, which replaces the
  # scheduler's base_lr) with MultiFactorScheduler(step=[500, 1000, 2000,
  # 5000], factor=0.5) over updates (steps); Adam's betas are MXNet's 0.9 / 0.999.
  o.learning_rate = 1e-3
  o.schedule = "step"
  o.warmup_steps = 0
  o.decay_steps = (500, 1000, 2000, 5000)
  o.decay_factor = 0.5
  o.b1, o.b2 = 0.9, 0.999
  o.grad_clip_norm = 0.0  # silent; the code clips nothing.


def _schedule(c: ml_collections.ConfigDict, *, epochs: int) -> None:
  c.num_train_steps = epochs * STEPS_PER_EPOCH
  c.log_every_steps = STEPS_PER_EPOCH  # its code printed the loss once per epoch.
  # §5 (p. 9): "each point is the average over 5 epochs": test every 5 epochs
  # (every evaluation also writes a checkpoint; each epoch would be ~300 MB
  # of 8-stack state every 125 steps). 5 batches of 10 = the 50 test images.
  c.eval_every_steps = 5 * STEPS_PER_EPOCH
  c.eval_batches = TEST_IMAGES_PER_EPOCH // c.input.eval_batch_size
  c.checkpoint_every_steps = c.eval_every_steps
