"""Reading what the user gives: images of any mode, video frames, folders, boxes.

* `load_image`: any size, grayscale (8/16 bit), palette, RGBA (composited on
  white), CMYK, EXIF-rotated JPEG -> (H, W, 3) uint8 as a viewer shows it.
* `iter_video_frames`, `video_fps`: the frames of a video (imageio + ffmpeg,
  or PyAV when installed) and its frame rate.
* `list_inputs`: a file, or a folder's visible files, sorted.
* `parse_box`: the `--box` flag.
"""

from __future__ import annotations

import pathlib
from typing import Iterator

import imageio.v3 as iio
import numpy as np
from PIL import Image
from PIL import ImageOps

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})


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
  try:
    for frame in iio.imiter(path, plugin="pyav" if _has_pyav() else None):
      frame = np.asarray(frame)
      if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=-1)
      yield frame[..., :3].astype(np.uint8, copy=False)
  except (OSError, RuntimeError, ValueError, StopIteration) as e:
    raise UnreadableInputError(f"{path}: not a readable video ({e})") from e


def _has_pyav() -> bool:
  try:
    import av  # pylint: disable=g-import-not-at-top,unused-import  # optional dependency
    return True
  except ImportError:
    return False


def video_fps(path: str | pathlib.Path, default: float = 25.0) -> float:
  """Frames per second from the video's metadata (default when absent)."""
  try:
    fps = iio.immeta(path).get("fps")
  except Exception:  # pylint: disable=broad-except
    fps = None
  return float(fps) if fps and np.isfinite(fps) and fps > 0 else default


def is_video(path: str | pathlib.Path) -> bool:
  return pathlib.Path(path).suffix.lower() in VIDEO_SUFFIXES


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
