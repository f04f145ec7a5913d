"""Phosphene images of scenes: every person of a scene, one representation.

A drawn representation draws every real person of a scene in its
`DrawStyle` (`phosphenes.scene.render_scene`) from the true keypoints,
nearest first in the scenes' depth order: a person shows only where no
nearer body is. `silhouette` is the scene's visible bodies (its instance
map: every pixel where a person is seen, occluders cut out), and
`image_edges` the Sobel edges of the scene's image. The simulator, its
frames and the pooling to the reader's images are the single-person
benchmark's (`cells.py`); masks and images are cached in the workdir as
uint8 (`scenes/masks/<name>.npz`, `scenes/images/L<layout>/<name>_<N>.npz`).

`learned` is not drawn: its encoder maps one person's pose heatmaps to
amplitudes, trained against the single-person common reader; it has no
rule for several people or their depth order.

* `scene_representations`: the registry's representations scenes can show.
* `masks`, `condition_images`: a representation's masks, and a
  condition's phosphene images and budget.
"""

from __future__ import annotations

import functools
import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from triplet_pose.phosphenes import scene as scene_lib
from triplet_pose.readability import cells as cells_lib
from triplet_pose.readability import data as data_lib
from triplet_pose.readability import representations as reps
from triplet_pose.readability import scenes_data

SILHOUETTE = "silhouette"  # drawn from the instance map, not from the pose
_CHUNK = 8  # scenes drawn at once (a filled body holds ~10 MB per person at 128 px)


def scene_representations() -> list[str]:
  """Every registered representation but `learned`, in the registry's order."""
  return [name for name, rep in reps.REGISTRY.items() if rep.kind != "learned"]


def check(names) -> None:
  """Raises ValueError naming a representation scenes cannot show."""
  known = scene_representations()
  for name in names:
    reps.get(name)
    if name not in known:
      raise ValueError(f"representation {name!r} cannot show scenes (its encoder reads one "
                       f"person); scenes know: {', '.join(known)}")


@functools.partial(jax.jit, static_argnames=("style", "size"))
def _draw(points, visible, valid, depth, *, style, size):
  def one(p, v, ok, d):
    return scene_lib.render_scene(p, image_size=(scenes_data.SOURCE_SIZE,) * 2,
                                  output_size=(size, size), visible=v, persons_valid=ok,
                                  depth=d, style=style)
  return jax.vmap(one)(points, visible, valid, depth)


def draw_uint8(rep: reps.Representation, split: dict[str, np.ndarray], *,
               size: int, line_width: float) -> np.ndarray:
  """(B, size, size) uint8 masks of a split's scenes (`size`: the simulator's resolution)."""
  if rep.name == SILHOUETTE:
    return split["bodies"]
  if rep.kind == "image":
    return reps.draw_uint8(rep, {"image": split["image"]}, image_size=(size, size),
                           output_size=(size, size), line_width=line_width)
  style = rep.style.replace(line_width=line_width, point_radius=line_width)
  count = len(split["joints"])
  out = np.empty((count, size, size), np.uint8)
  for start in range(0, count, _CHUNK):
    stop = min(start + _CHUNK, count)
    index = np.minimum(np.arange(start, start + _CHUNK), count - 1)  # padded: one compilation
    points = {k: jnp.asarray(split[k][index]) for k in rep.keypoint_sets}
    visible = {k: jnp.asarray(split[f"{k}_visible"][index]) for k in rep.keypoint_sets}
    drawn = _draw(points, visible, jnp.asarray(split["persons_valid"][index]),
                  jnp.asarray(split["depth"][index]), style=style, size=size)
    out[start:stop] = reps.to_uint8(drawn)[:stop - start]
  return out


def masks(rep: reps.Representation, data: dict[str, Any], *,
          config: ml_collections.ConfigDict, workdir: pathlib.Path) -> dict[str, np.ndarray]:
  """uint8 masks of both splits, kept in `workdir/scenes/masks/<name>.npz`."""
  meta = json.dumps([data["meta"], config.simulator_resolution, config.line_width])
  path = workdir / "scenes" / "masks" / f"{rep.name}.npz"
  path.parent.mkdir(parents=True, exist_ok=True)
  return data_lib.cached_npz(path, lambda: {
      split: draw_uint8(rep, data[split], size=config.simulator_resolution,
                        line_width=config.line_width)
      for split in scenes_data.STREAMS}, meta)


def condition_images(rep: reps.Representation, num_phosphenes: int, data: dict[str, Any], *,
                     config: ml_collections.ConfigDict, layout: int,
                     workdir: pathlib.Path) -> dict[str, Any]:
  """A condition's phosphene images (uint8, cached) and the budget of its test scenes.

  Returns:
    {'train', 'validation': (B, S, S) uint8 images, 'budget':
    {'active_electrodes', 'charge_per_frame'} of the validation scenes}.
  """
  path = (workdir / "scenes" / "images" / f"L{layout}" / f"{rep.name}_{num_phosphenes}.npz")
  path.parent.mkdir(parents=True, exist_ok=True)
  meta = json.dumps([data["meta"], config.simulator_resolution, config.line_width,
                     config.frames, config.observer.image_size])

  def make():
    sim = cells_lib.simulator(num_phosphenes, config=config, layout=layout)
    drawn = masks(rep, data, config=config, workdir=workdir)
    out = {}
    for split in scenes_data.STREAMS:
      rendered = reps.render_masks(sim, drawn[split], frames=config.frames,
                                   factor=cells_lib.factor(config))
      out[split] = rendered["images"]
      if split == "validation":
        out["active"], out["charge"] = rendered["active"], rendered["charge"]
    return out
  return cells_lib.with_budget(data_lib.cached_npz(path, make, meta))
