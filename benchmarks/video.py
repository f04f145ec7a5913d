r"""Live-rate video: frames -> pose -> phosphene frames, per stage, in frames/s.

  python benchmarks/video.py --joint_workdir=/tmp/demo/joint --triplet_workdir=/tmp/demo/triplet
  python benchmarks/video.py ... --frames=100 --size=256 --batch_sizes=1,8 --flip_test=true,false

Writes a `--frames`-frame `--size` x `--size` MP4 of moving noise (the
models' cost does not depend on what the frames show), then runs the path
of `launch.predict --input=VIDEO`: decode (PyAV/ffmpeg) -> the jitted chunk
function (crop, joint + triplet model, masks, simulator with its state
carried over, side-by-side picture) -> keypoints to frame pixels -> encode
(libx264) -> JSON records, for every batch size and flip-test setting, and
prints the time of each stage per frame and the frames/s end to end (the
first chunk, which compiles, is run once before timing).

It then times the parts of the jitted chunk function alone (each its own
jitted function on one chunk, median of `--repeats`), to show where the
time goes: crop, models, the pose drawn at the phosphenes' pixels, simulator,
picture.

Timings on a shared CPU are disturbed by other jobs: the load average is
printed at the start and the end.
"""

from __future__ import annotations

import functools
import os
import pathlib
import tempfile
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

import common  # first: puts the repository on sys.path
from triplet_pose import inference
from triplet_pose.prediction import files
from triplet_pose.prediction import predictor as predictor_lib
from triplet_pose.prediction import reading
from triplet_pose.prediction import renderer as renderer_lib
from triplet_pose.prediction import stream as stream_lib
from triplet_pose.prediction import writers

_JOINT = flags.DEFINE_string("joint_workdir", None, "Joint (or combined) model workdir.")
_TRIPLET = flags.DEFINE_string("triplet_workdir", None, "Triplet model workdir (optional).")
_FRAMES = flags.DEFINE_integer("frames", 100, "Frames of the test video.")
_SIZE = flags.DEFINE_integer("size", 256, "Side of the test video's frames.")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["1", "8"], "Frames per jitted call.")
_FLIP = flags.DEFINE_list("flip_test", ["true", "false"], "Flip-test settings to run.")
_PHOSPHENES = flags.DEFINE_integer("num_phosphenes", 1000, "Phosphenes simulated.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Repeats of each part's timing.")
_JSON = flags.DEFINE_string("json", "", "Also write the results to this file.")
flags.mark_flags_as_required(["joint_workdir"])


def _write_video(path: pathlib.Path, frames: int, size: int) -> None:
  rng = np.random.default_rng(0)
  base = rng.integers(0, 255, (size // 8, size // 8, 3)).astype(np.float32)
  with writers.VideoWriter(path, fps=25.0) as video:
    for t in range(frames):
      small = np.roll(base, t, axis=1)
      video.append(np.repeat(np.repeat(small, 8, 0), 8, 1).astype(np.uint8))


def _end_to_end(predictor, renderer, path, out_dir, batch_size) -> dict:
  live = stream_lib.PhospheneStream(predictor, renderer, batch_size=batch_size)
  first = next(reading.iter_video_frames(path))
  live.process([first] * batch_size)  # Compiles; then a fresh stream state.
  live.reset()
  live.times = stream_lib.StageTimes()
  cpu = time.process_time()
  files.predict_video(live, path, out_dir, stem=f"b{batch_size}", progress=False)
  cpu = (time.process_time() - cpu) / live.times.frames
  # On a shared machine the wall time depends on the other jobs; the CPU
  # time this process used does much less: alone on C cores the video would
  # take between cpu / C (all parallel) and cpu (all serial) per frame.
  cores = len(os.sched_getaffinity(0))
  seconds = sum(live.times.seconds.values())
  return {"summary": (f"{live.times.summary()}\n  CPU time {1000 * cpu:.1f} ms/frame: alone "
                      f"on {cores} cores {1 / cpu:.1f} to {cores / cpu:.1f} frames/s"),
          "frames_per_s": live.times.frames / seconds, "stage_ms": live.times.per_frame_ms(),
          "cpu_ms": 1000 * cpu}


def _parts(predictor, renderer, frames: np.ndarray, repeats: int) -> dict[str, float]:
  """ms per frame of each part of the chunk function, each jitted alone."""
  n, size = len(frames), predictor.image_size
  geometry = stream_lib.crop_geometry(frames.shape[1:3], size)
  affine = jnp.asarray(geometry.reduced_affine, jnp.float32)
  crop = jax.jit(functools.partial(stream_lib.crop_frames, size=size, factor=geometry.factor,
                                   fill=tuple(map(float, predictor.fill))))
  frames = jnp.asarray(frames)
  crops = crop(frames, affine)
  out = predictor.infer(predictor.variables, crops)
  sim = renderer.sim
  stimulus = jax.jit(functools.partial(renderer.stimulus, image_size=(size, size)))
  amplitudes = stimulus(renderer.pixels, out["keypoints"])
  simulate = jax.jit(lambda sim, amps: {k: sim.run(a) for k, a in amps.items()})
  images = simulate(sim, amplitudes)
  phos = {k: jnp.round(v * 255).astype(jnp.uint8) for k, v in images.items()}
  picture = jax.jit(jax.vmap(writers.side_by_side))
  ms = functools.partial(inference.ms_per_image, batch_size=n, repeats=repeats)
  return {"crop": ms(crop, frames, affine),
          "models": ms(predictor.infer, predictor.variables, crops),
          "pose at phosphenes": ms(stimulus, renderer.pixels, out["keypoints"]),
          "simulator": ms(simulate, sim, amplitudes),
          "picture": ms(picture, crops, phos, out["keypoints"])}


def main(argv):
  del argv
  print(f"{common.describe_machine()}; {inference.device_description()}; "
        f"load average {os.getloadavg()}")
  renderer = renderer_lib.PhospheneRenderer(num_phosphenes=_PHOSPHENES.value)
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    video = tmp / "test.mp4"
    _write_video(video, _FRAMES.value, _SIZE.value)
    frames = np.stack(list(reading.iter_video_frames(video)))
    results = []
    for flip in _FLIP.value:
      flip_test = flip.lower() in ("1", "true", "yes")
      for batch_size in (int(b) for b in _BATCH_SIZES.value):
        predictor = predictor_lib.Predictor(_JOINT.value, _TRIPLET.value,
                                            batch_size=batch_size, flip_test=flip_test)
        sets = "+".join(predictor.keypoint_names)
        print(f"flip_test={flip_test} batch {batch_size} ({sets}, {predictor.image_size} px, "
              f"{renderer.sim.num_phosphenes} phosphenes at {renderer.sim.resolution}):")
        run = _end_to_end(predictor, renderer, video, tmp, batch_size)
        print("  end to end: " + run.pop("summary"))
        parts = _parts(predictor, renderer, frames[:batch_size], _REPEATS.value)
        print("  parts alone: " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items())
              + f" ms/frame (sum {sum(parts.values()):.1f})")
        results.append({"flip_test": flip_test, "batch_size": batch_size, **run,
                        "parts_ms": parts})
  print(f"load average {os.getloadavg()}")
  if _JSON.value:
    common.write_json(_JSON.value, {
        "machine": common.machine(), "date": common.utc_now(), "results": results,
        "table": _table(results)},
        config={h.name: h.value for h in globals().values() if isinstance(h, flags.FlagHolder)},
        models={name: model for name in ("joint", "triplet", "combined")
                if (model := getattr(predictor.models, name, None)) is not None})


def _table(results) -> dict:
  """The headline table: frames/s end to end and where a frame's time goes."""
  rows = [[r["flip_test"], r["batch_size"], f"**{r['frames_per_s']:.1f}**",
           ", ".join(f"{k} {v:.1f}" for k, v in r["stage_ms"].items()), f"{r['cpu_ms']:.1f}"]
          for r in results]
  return common.table(
      ["flip test", "frames per call", "frames/s", "ms per frame by stage", "CPU ms/frame"],
      rows, title="live video: frames to phosphene frames with the joint and triplet models",
      note="end to end, as `launch.predict --input=VIDEO`: decode, pose + phosphenes "
      "(one jitted call), keypoints, encode, JSON")


if __name__ == "__main__":
  app.run(main)
