r"""Several people per frame: model, decoding, grouping and phosphene scene, in frames/s.

  python benchmarks/scenes_video.py --workdir=/tmp/scenes
  python benchmarks/scenes_video.py --workdir=/tmp/scenes --frames=50 --num_phosphenes=1000

Frames are validation scenes of the workdir's dataset (1-4 people: the
cost of grouping depends on what the frames show). Per frame, one at a
time as live video runs: the associative-embedding model (jitted), peak
NMS and top-k (`grouping.decode`, jitted), grouping and refinement (host,
scipy), and the scene's stimulus (drawn at the phosphenes' pixels only,
`phosphenes.scene.scene_stimulus`) with one simulator step (jitted, the
state carried over). Prints the median time of each stage and the
frames/s of their sum, with the machine and the load average before and
after (timings on a shared CPU are disturbed by other jobs).
"""

from __future__ import annotations

import argparse
import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import common  # first: puts the repository on sys.path
from triplet_pose import data
from triplet_pose import grouping
from triplet_pose import keypoints as kp
from triplet_pose import workdir as workdir_lib
from triplet_pose.evaluators import multi_person
from triplet_pose.models import associative_embedding
from triplet_pose.phosphenes import scene as scene_lib
from triplet_pose.prediction import renderer as renderer_lib



def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--workdir", required=True, help="workdir of configs/scenes.py training")
  p.add_argument("--frames", type=int, default=50, help="frames timed (after one that compiles)")
  p.add_argument("--num_phosphenes", type=int, default=1000, help="phosphenes simulated")
  return p.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  print(common.describe_machine(), "| load", os.getloadavg())
  loaded = workdir_lib.load_model(args.workdir, expect=associative_embedding.TARGET)
  config, options = loaded.config, multi_person.grouping_options(loaded.config)
  size = config.input.image_size
  it = data.create_iterator(config.input, split=config.input.eval_split, batch_size=1,
                            seed=0, shuffle=False, repeat=False)
  frames = [next(it)["image"] for _ in range(args.frames + 1)]
  apply = jax.jit(functools.partial(loaded.model.apply, train=False))
  renderer = renderer_lib.PhospheneRenderer(num_phosphenes=args.num_phosphenes)
  style = renderer.styles[kp.JOINTS.name]

  @jax.jit
  def phosphenes(state, joints, visible):
    # Drawn only at the pixels the simulator reads, as live video does.
    amplitude = scene_lib.scene_stimulus({kp.JOINTS.name: joints}, renderer.pixels,
                                         image_size=(size, size),
                                         visible={kp.JOINTS.name: visible}, style=style)
    return renderer.sim.step(state, amplitude)

  state = renderer.sim.init_state()
  times = {"model": [], "decode": [], "group": [], "phosphenes": []}
  for i, frame in enumerate(frames):
    t0 = time.perf_counter()
    out = jax.block_until_ready(apply(loaded.variables, jnp.asarray(frame, jnp.float32) / 255))
    t1 = time.perf_counter()
    maps, tags = out[kp.JOINTS.name][:, -1], out[associative_embedding.TAGS][:, -1]
    found = jax.device_get(grouping.decode(maps, tags, top_k=options.top_k,
                                           nms_kernel=options.nms_kernel))
    t2 = time.perf_counter()
    persons, person_tags = grouping.group(found["xy"][0], found["score"][0], found["tag"][0],
                                          options=options)
    if options.refine and len(persons):
      persons = grouping.refine(persons, person_tags, np.asarray(maps[0]), np.asarray(tags[0]))
    persons = grouping.to_pixels(persons, maps.shape[1], size)
    # A fixed number of rows (4 people), so the scene function compiles once.
    rows = np.full((4, kp.NUM_JOINTS, 3), np.nan)
    rows[:min(4, len(persons))] = persons[:4]
    t3 = time.perf_counter()
    state, image = phosphenes(state, jnp.asarray(np.nan_to_num(rows[..., :2]), jnp.float32),
                              jnp.asarray(np.isfinite(rows).all(-1), jnp.float32))
    jax.block_until_ready(image)
    t4 = time.perf_counter()
    if i:  # the first frame compiles
      for key, (a, b) in zip(times, ((t0, t1), (t1, t2), (t2, t3), (t3, t4))):
        times[key].append(b - a)
  medians = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
  total = sum(medians.values())
  print(f"{args.frames} frames of {size}x{size}, up to 4 people (median ms per frame):")
  for key, value in {**medians, "total": total}.items():
    print(f"  {key:<11} {value:7.1f}")
  print(f"{1e3 / total:.1f} frames/s | load", os.getloadavg())


if __name__ == "__main__":
  main()
