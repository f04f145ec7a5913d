"""Image or video -> pose (joints and triplet contour) -> phosphenes, with files.

* `load_image`: any size, grayscale (8/16 bit), palette, RGBA (composited on
  white), CMYK, EXIF-rotated JPEG -> (H, W, 3) uint8 as a viewer shows it.
* `crop`: the square model input around a box (default the whole frame),
  with the affine mapping crop pixels back to the original image.
* `Predictor`: the jitted, batched joint (+ triplet) model, or one combined
  model, with flip test; keypoints come back in original pixels with
  heatmap-peak confidences.
* `PhospheneRenderer`: the pose drawn as an activation mask and run through
  the phosphene simulator; for video the simulator state is carried from
  frame to frame (temporal dynamics).
* `predict_paths`: a file, folder or video -> per input a JSON and a panel
  PNG (or, for video, an MP4 of panels). An unreadable file is reported and
  skipped; it never stops the folder.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Iterable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from PIL import Image
from PIL import ImageOps

from triplet_pose import evaluation
from triplet_pose import inference
from triplet_pose import keypoints as kp
from triplet_pose import transforms
from triplet_pose import viz

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})


_CONFIDENCE = {"joints": "joint_confidence", "contour": "contour_confidence"}


class UnreadableInputError(ValueError):
  """A file that is not a readable image or video."""


def load_image(path: str | pathlib.Path) -> np.ndarray:
  """Reads an image as (H, W, 3) uint8, upright and RGB.

  EXIF orientation is applied; grayscale and 16-bit images are converted;
  transparency is composited on white.

  Raises:
    UnreadableInputError: naming the file, when PIL cannot decode it.
  """
  path = pathlib.Path(path)
  try:
    with Image.open(path) as pil:
      pil.load()
      pil = ImageOps.exif_transpose(pil)
      return pil_to_rgb(pil)
  except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as e:
    raise UnreadableInputError(f"{path}: not a readable image ({e})") from e


def pil_to_rgb(pil: Image.Image) -> np.ndarray:
  """Any PIL mode to (H, W, 3) uint8; alpha composited on white."""
  if pil.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
    array = np.asarray(pil, np.float64)
    peak = 65535.0 if pil.mode.startswith("I") and array.max() > 255 else 255.0
    if pil.mode == "F":
      peak = max(float(array.max()), 1e-12)
    gray = np.clip(array / peak * 255.0, 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)
  if pil.mode == "P" and "transparency" in pil.info:
    pil = pil.convert("RGBA")
  if pil.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
    rgba = pil.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    pil = Image.alpha_composite(background, rgba)
  return np.asarray(pil.convert("RGB"), np.uint8)


def iter_video_frames(path: str | pathlib.Path) -> Iterator[np.ndarray]:
  """Yields the frames of a video as (H, W, 3) uint8 (imageio + ffmpeg).

  Raises:
    UnreadableInputError: when the video cannot be opened or decoded.
  """
  import imageio.v3 as iio  # pylint: disable=g-import-not-at-top
  try:
    for frame in iio.imiter(path, plugin="pyav" if _has_pyav() else None):
      frame = np.asarray(frame)
      if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=-1)
      yield frame[..., :3].astype(np.uint8)
  except (OSError, RuntimeError, ValueError, StopIteration) as e:
    raise UnreadableInputError(f"{path}: not a readable video ({e})") from e


def _has_pyav() -> bool:
  try:
    import av  # pylint: disable=g-import-not-at-top,unused-import
    return True
  except ImportError:
    return False


def video_fps(path: str | pathlib.Path, default: float = 25.0) -> float:
  """Frames per second from the video's metadata (default when absent)."""
  import imageio.v3 as iio  # pylint: disable=g-import-not-at-top
  try:
    fps = iio.immeta(path).get("fps")
  except Exception:  # pylint: disable=broad-except
    fps = None
  return float(fps) if fps and np.isfinite(fps) and fps > 0 else default


def parse_box(text: str | None) -> tuple[float, float, float, float] | None:
  """'x0,y0,x1,y1' -> a tuple (None for None or '').

  Raises:
    ValueError: unless four numbers with x1 > x0 and y1 > y0.
  """
  if not text:
    return None
  try:
    box = tuple(float(v) for v in text.split(","))
  except ValueError:
    box = ()
  if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
    raise ValueError(f"--box must be x0,y0,x1,y1 with x1 > x0 and y1 > y0, got {text!r}")
  return box


def crop(image: np.ndarray, size: int, *, box: Sequence[float] | None = None,
         fill: Sequence[int] = (0, 0, 0)) -> tuple[np.ndarray, np.ndarray]:
  """The square model input around `box` (default the whole image).

  The box's longer side is fitted to `size` and centred; the rest is filled.

  Args:
    image: (H, W, 3) uint8.
    size: side of the crop.
    box: inclusive (x0, y0, x1, y1) in image pixels, or None.
    fill: RGB of the padding.

  Returns:
    crop (size, size, 3) uint8, crop_to_original (2, 3) affine.
  """
  h, w = image.shape[:2]
  box = (0, 0, w - 1, h - 1) if box is None else box
  affine = transforms.box_affine(np.asarray(box, np.float64), size)
  out = transforms.warp_image_np(image, affine, out_size=size, fill=fill)
  return out, transforms.invert_affine(affine)


@dataclasses.dataclass
class Prediction:
  """Keypoints of one image: crop pixels, original pixels and confidences."""
  crop: np.ndarray
  crop_to_original: np.ndarray
  arrays: dict[str, np.ndarray]  # make_inference_fn outputs for this image.

  def original(self, key: str) -> np.ndarray:
    return evaluation.to_original(self.arrays[key][None], self.crop_to_original[None])[0]


class Predictor:
  """The joint model and, optionally, the triplet model, batched and jitted.

  `joint_workdir` may also hold a combined model (`model.target='combined'`),
  which predicts the joints and the contour points itself.

  Raises:
    ValueError: a workdir of the wrong kind, or a triplet workdir next to a
      combined model.
  """

  def __init__(self, joint_workdir: str, triplet_workdir: str | None = None, *,
               batch_size: int = 8, flip_test: bool = True):
    first = inference.load_model(joint_workdir, expect=("joints", "combined"))
    if first.target == "combined":
      if triplet_workdir:
        raise ValueError(f"{joint_workdir} holds a combined model, which predicts the "
                         "contour points itself: drop the triplet workdir")
      self.models = inference.PoseModels(combined=first)
    else:
      triplet = (inference.load_model(triplet_workdir, expect="contour")
                 if triplet_workdir else None)
      self.models = inference.PoseModels(joint=first, triplet=triplet)
    self.image_size = self.models.image_size
    self.batch_size = batch_size
    self._variables = self.models.variables()
    self._infer = inference.make_inference_fn(self.models, flip_test=flip_test)
    # The thesis datasets pad crops with white, the others with black.
    self.fill = (255, 255, 255) if "thesis" in self.models.input_name else (0, 0, 0)

  def predict_crops(self, crops: np.ndarray) -> dict[str, np.ndarray]:
    """Runs (N, S, S, 3) uint8 crops in padded batches of `batch_size`."""
    outs = []
    for start in range(0, len(crops), self.batch_size):
      chunk = crops[start:start + self.batch_size]
      n = len(chunk)
      if n < self.batch_size:  # a fixed shape: one compilation
        chunk = np.concatenate([chunk, np.zeros((self.batch_size - n,) + chunk.shape[1:],
                                                chunk.dtype)])
      out = jax.device_get(self._infer(self._variables, jnp.asarray(chunk)))
      outs.append({k: np.asarray(v)[:n] for k, v in out.items()})
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

  def predict(self, images: Sequence[np.ndarray], boxes=None) -> list[Prediction]:
    """Crops and predicts a list of (H, W, 3) uint8 images."""
    boxes = boxes if boxes is not None else [None] * len(images)
    crops, affines = zip(*(crop(im, self.image_size, box=b, fill=self.fill)
                           for im, b in zip(images, boxes)))
    out = self.predict_crops(np.stack(crops))
    return [Prediction(c, a, {k: v[i] for k, v in out.items()})
            for i, (c, a) in enumerate(zip(crops, affines))]


class PhospheneRenderer:
  """Pose -> activation mask -> simulated phosphenes (joints and triplet).

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
    from triplet_pose import phosphenes  # pylint: disable=g-import-not-at-top
    self._ph = phosphenes
    params = phosphenes.load_params(params) if params is not None else phosphenes.default_params()
    layout_key, sim_key = jax.random.split(jax.random.key(seed))
    x, y = phosphenes.phosphenes_by_magnification(params, num_phosphenes, key=layout_key)
    self.sim = phosphenes.Simulator.create(params, x, y, key=sim_key)
    self.frames_per_image = frames_per_image
    self.line_width = line_width
    self.fill_limbs = fill_limbs
    self._step = jax.jit(self._step_impl, static_argnames=("image_size", "kind"))

  def _step_impl(self, sim, state, points, *, image_size, kind):
    if kind == "joints":
      return self._ph.pose_to_phosphenes(
          sim, state, joints=points, image_size=image_size, draw_joints=True,
          draw_skeleton=True, line_width=self.line_width,
          point_radius=self.line_width / 2)
    return self._ph.pose_to_phosphenes(
        sim, state, contour=points, image_size=image_size, draw_contour=True,
        fill_limbs=self.fill_limbs, line_width=self.line_width)

  def init_state(self):
    return self.sim.init_state()

  def step(self, state, points: np.ndarray, *, image_size: tuple[int, int], kind: str):
    """One video frame for joints or contour.

    Returns:
      (new state, (H, W) phosphene image, (H, W) activation mask).
    """
    return self._step(self.sim, state, jnp.asarray(points, jnp.float32),
                      image_size=tuple(image_size), kind=kind)

  def still(self, points: np.ndarray, *, image_size: tuple[int, int], kind: str
            ) -> tuple[np.ndarray, np.ndarray]:
    """(phosphene image, mask) after `frames_per_image` frames of a still pose."""
    state = self.init_state()
    for _ in range(self.frames_per_image):
      state, image, mask = self.step(state, points, image_size=image_size, kind=kind)
    return np.asarray(image), np.asarray(mask)


def prediction_record(pred: Prediction, *, source: str, image_shape,
                      box=None) -> dict[str, Any]:
  """The JSON record of one image: keypoints in original pixels + confidences."""
  def points(key, names):
    xy, conf = pred.original(key), pred.arrays[_CONFIDENCE[key]]
    return {n: {"x": round(float(p[0]), 2), "y": round(float(p[1]), 2),
                "confidence": round(float(c), 4)} for n, p, c in zip(names, xy, conf)}

  record = {"input": source, "width": int(image_shape[1]), "height": int(image_shape[0]),
            "box": None if box is None else [float(v) for v in box],
            "crop_to_original": np.asarray(pred.crop_to_original).round(6).tolist(),
            "joints": points("joints", kp.JOINT_NAMES)}
  if "contour" in pred.arrays:
    record["contour"] = points("contour", kp.CONTOUR_NAMES)
  return record


def panel(pred: Prediction, renderer: PhospheneRenderer | None, *, title: str,
          phosphene_images=None) -> np.ndarray:
  """The panel (H, W, 3) uint8 of one prediction, drawn on the crop.

  `phosphene_images` is ((image, mask) of the joints, (image, mask) of the
  contour or None); by default the renderer's still images.
  """
  a = pred.arrays
  size = pred.crop.shape[:2]
  if phosphene_images is None and renderer is not None:
    phosphene_images = (
        renderer.still(a["joints"], image_size=size, kind="joints"),
        renderer.still(a["contour"], image_size=size, kind="contour") if "contour" in a else None)
  joint_ph, contour_ph = phosphene_images or (None, None)
  joint_ph, joint_mask = joint_ph if joint_ph is not None else (None, None)
  contour_ph, contour_mask = contour_ph if contour_ph is not None else (None, None)
  fig = viz.pose_panel(pred.crop, joints=a["joints"], contour=a.get("contour"),
                       joint_heatmaps=a["joint_heatmaps"],
                       contour_heatmaps=a.get("contour_heatmaps"),
                       joint_phosphenes=joint_ph, contour_phosphenes=contour_ph,
                       joint_mask=joint_mask, contour_mask=contour_mask, title=title)
  return viz.figure_to_array(fig)


def list_inputs(path: str | pathlib.Path) -> list[pathlib.Path]:
  """The files to process: `path` itself, or the visible files of a folder, sorted.

  Raises:
    FileNotFoundError: when `path` does not exist.
  """
  path = pathlib.Path(path)
  if path.is_dir():
    return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
  if path.exists():
    return [path]
  raise FileNotFoundError(f"--input {path} does not exist")


def _output_stem(path: pathlib.Path, all_paths: Sequence[pathlib.Path]) -> str:
  same = [p for p in all_paths if p.stem == path.stem]
  return path.stem if len(same) == 1 else f"{path.stem}_{path.suffix.lstrip('.')}"


def _batched(items: Iterable, n: int) -> Iterator[list]:
  batch = []
  for item in items:
    batch.append(item)
    if len(batch) == n:
      yield batch
      batch = []
  if batch:
    yield batch


def predict_paths(predictor: Predictor, input_path: str | pathlib.Path,
                  output_dir: str | pathlib.Path, *, box=None,
                  renderer: PhospheneRenderer | None = None,
                  progress: bool = True) -> dict[str, Any]:
  """Predicts every image and video under `input_path` into `output_dir`.

  Images: `<stem>.json` and `<stem>_panel.png`. Videos: `<stem>.json` (one
  record per frame) and `<stem>_panel.mp4`.

  Returns:
    {'processed': [input paths], 'failed': {input path: reason}, 'outputs': [paths]}.
  """
  import tqdm  # pylint: disable=g-import-not-at-top
  output_dir = pathlib.Path(output_dir)
  output_dir.mkdir(parents=True, exist_ok=True)
  paths = list_inputs(input_path)
  videos = [p for p in paths if p.suffix.lower() in VIDEO_SUFFIXES]
  images = [p for p in paths if p not in videos]
  summary = {"processed": [], "failed": {}, "outputs": []}

  def fail(path, error):
    summary["failed"][str(path)] = str(error)
    logging.warning("skipped %s", error)

  def readable(paths_):
    for p in paths_:
      try:
        yield p, load_image(p)
      except UnreadableInputError as e:
        fail(p, e)

  bar = tqdm.tqdm(total=len(images), desc="images", unit="img", disable=not progress)
  for chunk in _batched(readable(images), predictor.batch_size):
    preds = predictor.predict([im for _, im in chunk], [box] * len(chunk))
    for (path, image), pred in zip(chunk, preds):
      stem = _output_stem(path, paths)
      record = prediction_record(pred, source=str(path), image_shape=image.shape, box=box)
      json_path = output_dir / f"{stem}.json"
      json_path.write_text(json.dumps(record, indent=1))
      png_path = output_dir / f"{stem}_panel.png"
      Image.fromarray(panel(pred, renderer, title=path.name)).save(png_path)
      summary["processed"].append(str(path))
      summary["outputs"] += [str(json_path), str(png_path)]
    bar.update(len(chunk))
  bar.update(len(images) - bar.n)
  bar.close()
  for path in videos:
    try:
      summary["outputs"] += predict_video(predictor, path, output_dir,
                                          stem=_output_stem(path, paths), box=box,
                                          renderer=renderer, progress=progress)
      summary["processed"].append(str(path))
    except UnreadableInputError as e:
      fail(path, e)
  return summary


def predict_video(predictor: Predictor, path: pathlib.Path, output_dir: pathlib.Path, *,
                  stem: str, box=None, renderer: PhospheneRenderer | None = None,
                  progress: bool = True) -> list[str]:
  """A video -> `<stem>.json` (per-frame records) and `<stem>_panel.mp4`.

  The phosphene simulator's state runs on from frame to frame.

  Raises:
    UnreadableInputError: when the video cannot be decoded or has no frames.
  """
  import imageio.v2 as imageio  # pylint: disable=g-import-not-at-top
  import tqdm  # pylint: disable=g-import-not-at-top
  fps = video_fps(path)
  json_path, mp4_path = output_dir / f"{stem}.json", output_dir / f"{stem}_panel.mp4"
  states = (renderer.init_state(), renderer.init_state()) if renderer else None
  records, writer, shape = [], None, None
  bar = tqdm.tqdm(desc=path.name, unit="frame", disable=not progress)
  try:
    for frames in _batched(iter_video_frames(path), predictor.batch_size):
      for frame, pred in zip(frames, predictor.predict(frames, [box] * len(frames))):
        record = prediction_record(pred, source=str(path), image_shape=frame.shape, box=box)
        records.append({"frame": len(records), "time": len(records) / fps, **record})
        images = None
        if renderer is not None:
          size = pred.crop.shape[:2]
          j_state, *joint_ph = renderer.step(states[0], pred.arrays["joints"],
                                             image_size=size, kind="joints")
          c_state, contour_ph = states[1], None
          if "contour" in pred.arrays:
            c_state, *contour_ph = renderer.step(states[1], pred.arrays["contour"],
                                                 image_size=size, kind="contour")
          states = (j_state, c_state)
          images = (tuple(np.asarray(v) for v in joint_ph),
                    None if contour_ph is None else tuple(np.asarray(v) for v in contour_ph))
        picture = panel(pred, renderer, title=f"{path.name} frame {len(records) - 1}",
                        phosphene_images=images)
        if writer is None:
          shape = tuple(-(-s // 16) * 16 for s in picture.shape[:2])
          writer = imageio.get_writer(mp4_path, fps=fps, codec="libx264",
                                      macro_block_size=1, quality=7)
        writer.append_data(_pad_to(picture, shape))
        bar.update(1)
  finally:
    bar.close()
    if writer is not None:
      writer.close()
  if not records:
    raise UnreadableInputError(f"{path}: no frames could be read")
  json_path.write_text(json.dumps({"input": str(path), "fps": fps, "frames": records}, indent=1))
  return [str(json_path), str(mp4_path)]


def _pad_to(picture: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
  out = np.full(shape + (3,), 255, np.uint8)
  h, w = min(shape[0], picture.shape[0]), min(shape[1], picture.shape[1])
  out[:h, :w] = picture[:h, :w]
  return out
