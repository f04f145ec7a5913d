r"""Forearm-against-torso contrast of the overlap modes (docs/phosphenes.md).

  python benchmarks/readability_contrast.py

The pose is `readability.CROSSING_CONTOUR` (the left forearm crosses the
belly), drawn with filled limbs and torso, line width 5 px, by the demo's
simulator (1000 phosphenes by cortical magnification, seed 0, 10 frames of
constant stimulation). For each rendering it prints the mean phosphene
brightness a on the left forearm (the inside of its contour quad) and b on
a ring 3 to 10 px around the forearm inside the torso, and the contrast
(a - b) / (a + b); the same for the activation masks. Deterministic: no
timing, so the machine does not matter.
"""

from __future__ import annotations

import jax
from matplotlib import path as mpath
import numpy as np
from scipy import ndimage

from triplet_pose import keypoints as kp
from triplet_pose import phosphenes
from triplet_pose.phosphenes import readability

LINE_WIDTH = 5.0
RING = (3.0, 10.0)  # Pixels from the forearm.


def demo_simulator(num_phosphenes: int = 1000, seed: int = 0) -> phosphenes.Simulator:
  """The simulator of `prediction.PhospheneRenderer()` (the demo's)."""
  params = phosphenes.default_params()
  layout_key, sim_key = jax.random.split(jax.random.key(seed))
  x, y = phosphenes.phosphenes_by_magnification(params, num_phosphenes, key=layout_key)
  return phosphenes.Simulator.create(params, x, y, key=sim_key)


def _inside(polygon: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
  rows, cols = np.mgrid[:shape[0], :shape[1]]
  centres = np.stack([cols.ravel(), rows.ravel()], -1)
  return mpath.Path(polygon).contains_points(centres).reshape(shape)


def regions(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
  """(forearm, ring) boolean masks at the simulator resolution `shape`."""
  points = np.asarray(phosphenes.image_to_simulator_coordinates(
      readability.CROSSING_CONTOUR, image_size=readability.CROSSING_IMAGE_SIZE,
      output_size=shape))
  seg = kp.LIMB_SEGMENTS["left_forearm"]
  quad = [seg["medial"][0], seg["medial"][1], seg["lateral"][1], seg["lateral"][0]]
  forearm = _inside(points[quad], shape)
  torso = _inside(points[list(kp.TORSO_POLYGON)], shape)
  distance = ndimage.distance_transform_edt(~forearm)
  ring = torso & ~forearm & (distance >= RING[0]) & (distance <= RING[1])
  return forearm, ring


def contrast(picture: np.ndarray, forearm: np.ndarray, ring: np.ndarray
             ) -> tuple[float, float, float]:
  """(a, b, (a - b) / (a + b)) of the mean values on the forearm and the ring."""
  a, b = float(picture[forearm].mean()), float(picture[ring].mean())
  return a, b, (a - b) / (a + b) if a + b > 0 else float("nan")


def measure(sim: phosphenes.Simulator, *, frames: int = 10) -> dict[str, dict[str, tuple]]:
  """{rendering: {'mask' | 'phosphenes': (a, b, contrast)}}."""
  style = phosphenes.DrawStyle(line_width=LINE_WIDTH, fill_limbs=True, fill_torso=True)
  renderings = {"plain": style.replace(overlap="none"),
                "nearest, gap 5 px": style.replace(overlap="nearest", overlap_gap=5.0),
                "nearest, gap 10 px": style.replace(overlap="nearest", overlap_gap=10.0)}
  forearm, ring = regions(sim.resolution)
  results = {}
  for name, s in renderings.items():
    (mask, still), = readability.compare_overlap_modes(
        sim, readability.CROSSING_CONTOUR, image_size=readability.CROSSING_IMAGE_SIZE,
        style=s, frames=frames, modes=(s.overlap,)).values()
    results[name] = {"mask": contrast(mask, forearm, ring),
                     "phosphenes": contrast(still, forearm, ring)}
  return results


def main():
  sim = demo_simulator()
  forearm, ring = regions(sim.resolution)
  print(f"{sim.num_phosphenes} phosphenes, {sim.resolution[1]}x{sim.resolution[0]} px; "
        f"forearm {forearm.sum()} px, ring {ring.sum()} px")
  print(f"{'rendering':<20} {'mask a':>7} {'b':>6} {'contrast':>8} | "
        f"{'phosphenes a':>12} {'b':>6} {'contrast':>8}")
  for name, r in measure(sim).items():
    (ma, mb, mc), (pa, pb, pc) = r["mask"], r["phosphenes"]
    print(f"{name:<20} {ma:>7.3f} {mb:>6.3f} {mc:>8.2f} | {pa:>12.3f} {pb:>6.3f} {pc:>8.2f}")
  print("contrast: (a - b) / (a + b); a on the left forearm, b on a ring 3 to 10 px "
        "around it inside the torso.")


if __name__ == "__main__":
  main()
