r"""Several people per frame: model, decoding, grouping and phosphene scene, in frames/s.

  python benchmarks/scenes_video.py --workdir=/tmp/scenes
  python benchmarks/scenes_video.py --workdir=/tmp/scenes --frames=50 --num_phosphenes=1000
  python benchmarks/scenes_video.py --workdir=/tmp/scenes --scales=1 --map_scale=1

Frames are validation scenes of the workdir's dataset (1-4 people: the
cost of grouping depends on what the frames show). Each frame goes through
`prediction.ScenePipeline.process`, the code `launch.predict` runs on a
video of several people, one frame at a time: the crop to the model's
input, the associative-embedding model (jitted), peak NMS and top-k
(`grouping.decode`, jitted), grouping and refinement (host, scipy), the
scene's stimulus (drawn at the phosphenes' pixels only,
`phosphenes.scene.scene_stimulus`) with one simulator step (jitted, the
state carried over), and the side-by-side picture. Prints the median time
of each stage and the frames/s of their sum, with the machine and the
load average before and after (timings on a shared CPU are disturbed by
other jobs).

The peer, with `--joint_workdir` (the demo's single-person joint model):
the same frames through the one-person live path of `launch.predict`
(`prediction.PhospheneStream`, one frame per call, `benchmarks/video.py`),
timed in the same run; the ratio says what finding, grouping and drawing
every person costs beside one person's pose.

The model runs at the workdir's input scales (`config.grouping.scales`,
the multi-scale test), or at those of `--scales` and `--map_scale`.
"""

from __future__ import annotations

import argparse
import collections
import os
import time

import numpy as np

import common  # first: puts the repository on sys.path
from triplet_pose import data
from triplet_pose import workdir as workdir_lib
from triplet_pose.models import associative_embedding
from triplet_pose.prediction import predictor as predictor_lib
from triplet_pose.prediction import renderer as renderer_lib
from triplet_pose.prediction import scene_stream
from triplet_pose.prediction import scenes
from triplet_pose.prediction import stream as stream_lib


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--workdir", required=True, help="workdir of configs/scenes.py training")
  p.add_argument("--frames", type=int, default=50, help="frames timed (after one that compiles)")
  p.add_argument("--num_phosphenes", type=int, default=1000, help="phosphenes simulated")
  p.add_argument("--joint_workdir", default=None,
                 help="single-person joint model: the peer, timed on the same frames")
  p.add_argument("--scales", type=lambda v: tuple(float(x) for x in v.split(",")),
                 default=None, help="input scales, e.g. 1,1.25 (default: the config's)")
  p.add_argument("--map_scale", type=float, default=None,
                 help="side of the combined maps in plain maps' sides (default: the config's)")
  return p.parse_args(argv)


def one_person_ms(joint_workdir: str, renderer, frames) -> float:
  """Median ms per frame of the single-person live path on `frames` (the
  first compiles), one frame per call, no flip test."""
  live = stream_lib.PhospheneStream(
      predictor_lib.Predictor(joint_workdir, None, batch_size=1, flip_test=False), renderer)
  times = []
  for i, frame in enumerate(frames):
    start = time.perf_counter()
    live.process([frame])
    if i:
      times.append(time.perf_counter() - start)
  return 1e3 * float(np.median(times))


def main(argv=None):
  args = parse_args(argv)
  print(common.describe_machine(), "| load", os.getloadavg())
  loaded = workdir_lib.load_model(args.workdir, expect=associative_embedding.TARGET)
  config = loaded.config
  size = config.input.image_size
  it = data.create_iterator(config.input, split=config.input.eval_split, batch_size=1,
                            seed=0, shuffle=False, repeat=False)
  frames = [next(it)["image"][0] for _ in range(args.frames + 1)]
  renderer = renderer_lib.PhospheneRenderer(num_phosphenes=args.num_phosphenes)
  chosen = {"scales": args.scales, "map_scale": args.map_scale}
  options = scenes.grouping_options(args.workdir, step=loaded.step, config=config,
                                    **{k: v for k, v in chosen.items() if v is not None})
  pipeline = scene_stream.ScenePipeline(loaded, renderer=renderer, options=options)
  times = collections.defaultdict(list)
  for i, live in enumerate(pipeline.run(frames)):
    if i:  # the first frame compiles
      for key, seconds in live.seconds.items():
        times[key].append(seconds)
  medians = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
  total = sum(medians.values())
  print(f"{args.frames} frames of {size}x{size}, up to {pipeline.max_persons} people, input "
        f"scales {', '.join(f'{v:g}' for v in options.scales)}, maps at "
        f"{options.map_scale:g}x (median ms per frame):")
  for key, value in {**medians, "total": total}.items():
    print(f"  {key:<11} {value:7.1f}")
  print(f"{1e3 / total:.1f} frames/s | load", os.getloadavg())
  if args.joint_workdir:
    single = one_person_ms(args.joint_workdir, renderer, frames)
    print(f"peer, one person's pose (PhospheneStream, {args.joint_workdir}): {single:.1f} ms, "
          f"{1e3 / single:.1f} frames/s; several people / one person: {single / total:.2f}x "
          "the frame rate | load", os.getloadavg())


if __name__ == "__main__":
  main()
