"""Pose -> activation mask -> simulated phosphenes, per keypoint set.

The joints are drawn as discs and skeleton lines, the triplet as contour
lines with filled limb outlines (body width); each set has its own
simulator state, so the two renderings can be shown side by side. For video
the state is carried from frame to frame (temporal dynamics); a still image
is stimulated for `frames_per_image` frames first.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from triplet_pose import keypoints as kp
from triplet_pose import phosphenes


class PhospheneRenderer:
  """The simulator and the drawing styles of the joints and the triplet.

  Args:
    params: simulator parameters (path or dict); default the built-in ones.
    num_phosphenes: phosphenes drawn by cortical magnification.
    seed: seeds the phosphene layout and thresholds.
    frames_per_image: frames of constant stimulation before a still image's
      phosphenes are shown (activation builds up over frames).
    line_width: width of the drawn skeleton and contour lines, in pixels of
      the simulator resolution.
    fill_limbs: fill the limb outlines of the triplet (shows body width).
  """

  def __init__(self, params=None, *, num_phosphenes: int = 1000, seed: int = 0,
               frames_per_image: int = 10, line_width: float = 5.0,
               fill_limbs: bool = True):
    params = (phosphenes.load_params(params) if params is not None
              else phosphenes.default_params())
    layout_key, sim_key = jax.random.split(jax.random.key(seed))
    x, y = phosphenes.phosphenes_by_magnification(params, num_phosphenes, key=layout_key)
    self.sim = phosphenes.Simulator.create(params, x, y, key=sim_key)
    self.pixels = self.sim.sample_pixels()
    self.frames_per_image = frames_per_image
    self.line_width = line_width
    self.fill_limbs = fill_limbs
    self.styles = {
        kp.JOINTS.name: phosphenes.DrawStyle(point_radius=line_width / 2,
                                             line_width=line_width, draw_contour=False),
        kp.CONTOUR.name: phosphenes.DrawStyle(line_width=line_width, fill_limbs=fill_limbs,
                                              draw_joints=False, draw_skeleton=False)}
    self._step = jax.jit(self.step_fn, static_argnames=("image_size",))

  def masks(self, points: Mapping[str, jax.Array], *, image_size: tuple[int, int]
            ) -> dict[str, jax.Array]:
    """{set: (..., H, W) activation mask} of {set: (..., K, 2) points} (jittable)."""
    return {name: phosphenes.render_pose({name: p}, image_size=image_size,
                                         output_size=self.sim.resolution,
                                         style=self.styles[name])
            for name, p in points.items()}

  def stimulus(self, pixels, points: Mapping[str, jax.Array], *, image_size: tuple[int, int]
               ) -> dict[str, jax.Array]:
    """{set: (..., N) amplitudes} of {set: (..., K, 2) points} (jittable).

    Only the pixels the simulator reads are drawn (`pixels`, i.e.
    `self.pixels`; `phosphenes.pose_stimulus`), not the whole mask: the
    fast path of video.
    """
    return {name: phosphenes.pose_stimulus({name: p}, pixels, image_size=image_size,
                                           style=self.styles[name])
            for name, p in points.items()}

  def init_state(self, names=(kp.JOINTS.name, kp.CONTOUR.name), batch_shape=()
                 ) -> dict[str, Any]:
    """Resting tissue for every keypoint set in `names`."""
    states = {name: self.sim.init_state(batch_shape) for name in names}
    # Committed to the device like the states a jitted step returns, so the
    # second frame does not compile the step again.
    return jax.device_put(states, jax.devices()[0])

  def step_fn(self, sim, states, points, *, image_size):
    """One frame (pure): (new states, {set: (phosphene image, mask)})."""
    out, new_states = {}, dict(states)
    for name, mask in self.masks(points, image_size=image_size).items():
      amplitude = sim.sample_stimulus(mask, rescale=True)
      new_states[name], image = sim.step(states[name], amplitude)
      out[name] = (image, mask)
    return new_states, out

  def step(self, states, points: Mapping[str, np.ndarray], *, image_size: tuple[int, int]):
    """One video frame of every keypoint set in `points` (jitted).

    Args:
      states: from `init_state` (or the previous step), one per set.
      points: {set: (K, 2)} in pixels of an image of `image_size`.
      image_size: (H, W) of that image.

    Returns:
      (new states, {set: ((H, W) phosphene image, (H, W) activation mask)}).
    """
    points = {k: jnp.asarray(v, jnp.float32) for k, v in points.items()}
    return self._step(self.sim, states, points, image_size=tuple(image_size))

  def still(self, points: Mapping[str, np.ndarray], *, image_size: tuple[int, int]
            ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{set: (phosphene image, mask)} after `frames_per_image` frames of a still pose."""
    states = self.init_state(tuple(points))
    out = {}
    for _ in range(self.frames_per_image):
      states, out = self.step(states, points, image_size=image_size)
    return {name: (np.asarray(image), np.asarray(mask)) for name, (image, mask) in out.items()}
