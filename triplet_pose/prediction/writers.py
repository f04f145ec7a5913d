"""What prediction writes: JSON records, panels and videos.

* `prediction_record`: one image's keypoints in original pixels with
  confidences, as JSON-ready dicts keyed by keypoint name.
* `panel`: the matplotlib panel of one prediction (skeleton, triplet,
  heatmaps, phosphenes): slow, for still images and optional for video.
* `side_by_side`: the fast video frame, composed with arrays: the input
  with the keypoints dotted over it, then the phosphenes of each set.
* `VideoWriter`: an MP4 (libx264) of frames of any size (padded to a
  multiple of 16, as the encoder wants).
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Mapping, Sequence

import imageio.v2 as imageio
import jax.numpy as jnp
import numpy as np
from PIL import Image

from triplet_pose import keypoints as kp
from triplet_pose import storage
from triplet_pose import viz
from triplet_pose.prediction import predictor as predictor_lib
from triplet_pose.prediction import renderer as renderer_lib

# Colour of each set's keypoints over the input picture: joints red, triplet blue.
TINTS = {kp.JOINTS.name: np.array([1.0, 0.25, 0.2]),
         kp.CONTOUR.name: np.array([0.2, 0.5, 1.0])}


def keypoint_records(names: Sequence[str], points, confidence) -> dict[str, dict[str, float]]:
  """{name: {'x', 'y', 'confidence'}} of (K, 2) points and (K,) confidences."""
  return {n: {"x": round(float(p[0]), 2), "y": round(float(p[1]), 2),
              "confidence": round(float(c), 4)}
          for n, p, c in zip(names, np.asarray(points), np.asarray(confidence))}


def prediction_record(pred: predictor_lib.Prediction, *, source: str, image_shape,
                      box=None) -> dict[str, Any]:
  """The JSON record of one image: keypoints in original pixels + confidences."""
  record = {"input": source, "width": int(image_shape[1]), "height": int(image_shape[0]),
            "box": None if box is None else [float(v) for v in box],
            "crop_to_original": np.asarray(pred.crop_to_original).round(6).tolist()}
  for name in pred.keypoints:
    record[name] = keypoint_records(kp.get(name).names, pred.original(name),
                                    pred.confidence[name])
  return record


def write_json(path: pathlib.Path, record: Any) -> str:
  return str(storage.write_text(path, json.dumps(record, indent=1)))


def save_png(picture: np.ndarray, path: pathlib.Path) -> str:
  with storage.atomic_write(path) as tmp:
    Image.fromarray(picture).save(tmp)
  return str(path)


def panel(pred: predictor_lib.Prediction, renderer: renderer_lib.PhospheneRenderer | None,
          *, title: str,
          phosphene_images: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None
          ) -> np.ndarray:
  """The panel (H, W, 3) uint8 of one prediction, drawn on the crop.

  Args:
    pred: the prediction.
    renderer: renders the still phosphenes when `phosphene_images` is None
      (no phosphenes when both are None).
    title: figure title.
    phosphene_images: {set: (phosphene image, mask)}, e.g. one video frame's.
  """
  if phosphene_images is None and renderer is not None:
    phosphene_images = renderer.still(pred.keypoints, image_size=pred.crop.shape[:2])
  fig = viz.pose_panel(pred.crop, viz.PanelInputs(
      points=pred.keypoints, heatmaps=pred.heatmaps, phosphenes=phosphene_images), title=title)
  return viz.figure_to_array(fig)


def side_by_side(crop, phosphenes: Mapping[str, Any], points: Mapping[str, Any]):
  """The input, then each set's phosphenes, in one (H, W * (1 + sets), 3) uint8 row.

  Array code only (jax, jittable; numpy arrays work too), so it stays on
  the fast path of video.

  Args:
    crop: (h, w, 3) uint8 model input; resized (nearest) to the phosphenes' size.
    phosphenes: {set: (H, W) uint8 phosphene image}.
    points: {set: (K, 2) keypoints in crop pixels}, dotted over the input
      (joints red, triplet blue).
  """
  h, w = next(iter(phosphenes.values())).shape
  rows = (jnp.arange(h) * crop.shape[0] // h)[:, None]
  cols = (jnp.arange(w) * crop.shape[1] // w)[None, :]
  picture = jnp.asarray(crop)[rows, cols]
  radius = max(1, round(h / 128))
  offsets = jnp.arange(-radius, radius + 1)
  for name, xy in points.items():
    # Keypoint (x, y) in crop pixels -> the picture's pixel, then a square dot.
    centre = jnp.round((jnp.asarray(xy) + 0.5) * jnp.asarray([w / crop.shape[1],
                                                             h / crop.shape[0]]) - 0.5)
    ys = jnp.clip(centre[:, 1, None, None] + offsets[None, :, None], 0, h - 1).astype(jnp.int32)
    xs = jnp.clip(centre[:, 0, None, None] + offsets[None, None, :], 0, w - 1).astype(jnp.int32)
    colour = jnp.asarray(np.round(TINTS[name] * 255), jnp.uint8)
    picture = picture.at[ys, xs].set(colour)
  columns = [picture.astype(jnp.uint8)]
  columns += [jnp.repeat(jnp.asarray(p, jnp.uint8)[..., None], 3, axis=-1)
              for p in phosphenes.values()]
  return jnp.concatenate(columns, axis=1)


class VideoWriter:
  """Appends (H, W, 3) uint8 frames to an MP4 (libx264), opened on the first frame.

  Frames are padded (white) to the first frame's size rounded up to 16. The
  file is written beside `path` and takes its name when closed (also when
  the block is left by an error: the frames so far make a valid video), so a
  killed run never leaves a truncated MP4 under the final name.
  """

  def __init__(self, path: str | pathlib.Path, *, fps: float, quality: int = 7):
    self.path, self.fps, self.quality = pathlib.Path(path), fps, quality
    self._writer, self._shape = None, None
    self._partial = storage.partial_path(self.path)

  def append(self, frame: np.ndarray) -> None:
    if self._writer is None:
      self._shape = tuple(-(-s // 16) * 16 for s in frame.shape[:2])
      self._writer = imageio.get_writer(self._partial, fps=self.fps, codec="libx264",
                                        macro_block_size=1, quality=self.quality)
    self._writer.append_data(_pad_to(frame, self._shape))

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None
      self._partial.replace(self.path)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def _pad_to(picture: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
  if picture.shape[:2] == shape:
    return picture
  out = np.full(shape + (3,), 255, np.uint8)
  h, w = min(shape[0], picture.shape[0]), min(shape[1], picture.shape[1])
  out[:h, :w] = picture[:h, :w]
  return out
