r"""Pose and phosphenes for images, folders and videos, from trained checkpoints.

  python -m launch.predict --joint_workdir=/tmp/joint --triplet_workdir=/tmp/triplet \
      --input=photos/ --output=/tmp/out [--box=x0,y0,x1,y1]
  python -m launch.predict --joint_workdir=/tmp/combined --input=photos/ --output=/tmp/out

--joint_workdir holds a joint model (then --triplet_workdir adds the contour
points) or a combined model (joints and contour points from one network).

Per image: OUT/<name>.json (joints and contour points in original pixels,
with confidences) and OUT/<name>_panel.png (skeleton, triplet, heatmaps,
phosphenes). Per video, through the live path (one jitted function per
chunk of --video_batch_size frames, temporal dynamics on): OUT/<name>.json (every
frame's keypoints), OUT/<name>_phosphenes.mp4 (the input with the drawn pose
| phosphenes of the joints | of the triplet) and, with --video_panels,
OUT/<name>_panel.mp4 (matplotlib panels: slow); the time of each stage and
the frames/s are printed.
Several people: when --joint_workdir holds a multi-person model
(configs/scenes.py: associative embedding, found from its config), every
person is found, grouped and rendered, one image or frame at a time:

  python -m launch.predict --joint_workdir=/tmp/scenes --input=street.jpg --output=/tmp/out
  python -m launch.predict --joint_workdir=/tmp/scenes --triplet_workdir=/tmp/triplet \
      --input=clip.mp4 --output=/tmp/out

Per image: OUT/<name>.json, a `persons` list, strongest first (each: `joints`,
one [x, y, score] per MPII joint in original pixels or null where not
found; `score`, their mean; `depth`, the rank by joint-box size, 0 = nearest;
with --triplet_workdir `contour`, the 26 contour points of the triplet model
run on each person), and OUT/<name>_panel.png (the model's input with the
persons in distinct colours, and the phosphenes of the whole scene). Per
video: OUT/<name>.json (every frame's persons) and OUT/<name>_phosphenes.mp4
(the input with the persons | the phosphenes of the scene, the simulator's
state carried from frame to frame; the strongest input.max_persons people
of the model's config are drawn). Any image size: the image is letterboxed
to the model's input and the persons mapped back. --box crops around a
region as for one person; --flip_test and --batch_size do not apply;
--video_panels and a --video_batch_size other than 1 are refused.

Files that cannot be read are reported and skipped; the exit status is 2
when nothing could be processed, for a flag that does not fit the model, or
for an unwritable or full output disk (the outputs written before are kept).
"""

import sys

from absl import app
from absl import flags

from launch import common
from triplet_pose import prediction
from triplet_pose import storage

_JOINT_WORKDIR = flags.DEFINE_string(
    "joint_workdir", None, "Workdir of a trained joint model, of a combined model "
    "(model.target='combined': joints and contour points from one network), or of a "
    "multi-person model (configs/scenes.py: several people per image).")
_TRIPLET_WORKDIR = flags.DEFINE_string(
    "triplet_workdir", None, "Workdir of a trained triplet model (optional; not with a "
    "combined model; with a multi-person model, run on every person).")
_INPUT = flags.DEFINE_string("input", None, "An image, a folder of images/videos, or a video.")
_OUTPUT = flags.DEFINE_string("output", None, "Output folder.")
_BOX = flags.DEFINE_string("box", None, "x0,y0,x1,y1: crop around this box "
                           "(original pixels) instead of the whole frame.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 8, "Images per jitted batch.")
_FLIP_TEST = flags.DEFINE_bool("flip_test", True, "Average with the mirrored image.")
_PHOSPHENES = flags.DEFINE_bool(
    "phosphenes", True, "Render phosphenes in the image panels (videos always render "
    "them: the phosphene video is their output).")
_PHOSPHENE_PARAMS = flags.DEFINE_string(
    "phosphene_params", None, "Simulator params.yaml (dynaphos schema); default built-in.")
_NUM_PHOSPHENES = flags.DEFINE_integer("num_phosphenes", 1000, "Phosphenes simulated.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the phosphene layout.")
_VIDEO_BATCH_SIZE = flags.DEFINE_integer(
    "video_batch_size", 1, "Video frames per jitted call (1: the least latency; "
    "benchmarks/video.py measures larger chunks).")
_VIDEO_PANELS = flags.DEFINE_bool(
    "video_panels", False, "Also write the matplotlib panels of every video frame "
    "(<name>_panel.mp4; far slower than the phosphene video).")
flags.mark_flags_as_required(["joint_workdir", "input", "output"])
# Free space asked for before starting: a few panels and videos.
MIN_FREE_BYTES = 50 << 20


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  box = prediction.parse_box(_BOX.value)
  # Before the (slow) model loading: an unwritable or full output disk.
  storage.check_writable(_OUTPUT.value, needed_bytes=MIN_FREE_BYTES, what="predictions")
  if prediction.holds_several_people(_JOINT_WORKDIR.value):
    summary = _predict_scenes(box)
  else:
    summary = _predict_one_person(box)
  print(f"processed {len(summary['processed'])} input(s) into {_OUTPUT.value}")
  for path, timing in summary["timings"].items():
    print(f"{path}: {timing}")
  for reason in summary["failed"].values():
    print(f"SKIPPED {reason}", file=sys.stderr)
  if not summary["processed"]:
    common.fail(f"none of the inputs in {_INPUT.value} could be processed")


def _renderer() -> prediction.PhospheneRenderer:
  return prediction.PhospheneRenderer(_PHOSPHENE_PARAMS.value,
                                      num_phosphenes=_NUM_PHOSPHENES.value, seed=_SEED.value)


def _predict_one_person(box) -> dict:
  predictor = prediction.Predictor(_JOINT_WORKDIR.value, _TRIPLET_WORKDIR.value,
                                   batch_size=_BATCH_SIZE.value, flip_test=_FLIP_TEST.value)
  renderer = _renderer() if _PHOSPHENES.value else None
  with common.disk_full_names(_OUTPUT.value, what="predictions"):
    return prediction.predict_paths(predictor, _INPUT.value, _OUTPUT.value, box=box,
                                    renderer=renderer, video_panels=_VIDEO_PANELS.value,
                                    video_batch_size=_VIDEO_BATCH_SIZE.value)


def _predict_scenes(box) -> dict:
  """Several people (a multi-person --joint_workdir): see the module docstring."""
  where = f"--joint_workdir={_JOINT_WORKDIR.value} holds a multi-person model"
  if _VIDEO_PANELS.value:
    raise ValueError(f"--video_panels: {where}, whose videos are the phosphene MP4 only")
  if _VIDEO_BATCH_SIZE.value != 1:
    raise ValueError(f"--video_batch_size={_VIDEO_BATCH_SIZE.value}: {where}, which takes "
                     "video frames one at a time (grouping runs between model and simulator)")
  pipeline = prediction.ScenePipeline.from_workdirs(
      _JOINT_WORKDIR.value, _TRIPLET_WORKDIR.value, renderer=_renderer(), box=box)
  with common.disk_full_names(_OUTPUT.value, what="predictions"):
    return prediction.predict_scene_paths(pipeline, _INPUT.value, _OUTPUT.value,
                                          phosphenes=_PHOSPHENES.value)


if __name__ == "__main__":
  common.run(main)
