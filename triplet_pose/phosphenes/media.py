"""Images and videos to their phosphene version (behind `launch.phosphenes`).

Each frame is turned into an activation mask at the simulator resolution
(its intensity, or its edges by Sobel magnitude), sampled per phosphene with
`rescale=True` (mask 1 = `sampling.stimulus_scale` amperes) and run through
the simulator, whose state carries over between video frames. A still image
is stimulated for `frames_per_image` frames so that tissue activation builds
up, and the last frame is written. Video goes through imageio (ffmpeg for
mp4/avi/mov/mkv/webm, Pillow for animated GIF).
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Iterator, Mapping

import imageio.v2 as imageio
import imageio.v3 as iio
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
from scipy import ndimage
from tqdm import tqdm

from triplet_pose.phosphenes import layout as layout_lib
from triplet_pose.phosphenes import params as params_lib
from triplet_pose.phosphenes import simulator as simulator_lib

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif"})


def build_simulator(params: Mapping[str, Any] | str | os.PathLike | None = None, *,
                    layout: str = "magnification", num_phosphenes: int = 1000,
                    cortex_grid: int = 32, coordinates: str | None = None,
                    seed: int = 0) -> simulator_lib.Simulator:
  """A simulator with a standard layout.

  Args:
    params: parameters (path or dict); default dynaphos' defaults.
    layout: 'magnification' (num_phosphenes drawn by cortical
      magnification), 'cortex' (a cortex_grid x cortex_grid electrode grid
      per hemisphere, both hemifields, with the params' noise and dropout) or
      'coordinates' (x, y lists in degrees from the YAML file `coordinates`).
    num_phosphenes, cortex_grid, coordinates: see `layout`.
    seed: seeds the layout, thresholds and orientations.
  """
  p = params_lib.load_params(params if params is not None else params_lib.default_params())
  k_layout, k_sim = jax.random.split(jax.random.PRNGKey(seed))
  if layout == "magnification":
    x, y = layout_lib.phosphenes_by_magnification(p, num_phosphenes, key=k_layout)
  elif layout == "cortex":
    cx, cy = layout_lib.cortex_grid(p["cortex_model"], cortex_grid, cortex_grid, x_max=40)
    lay = layout_lib.phosphenes_from_cortex(p["cortex_model"], cx, cy, key=k_layout,
                                            hemifield="both")
    x, y = lay.x_deg, lay.y_deg
  elif layout == "coordinates":
    if not coordinates:
      raise ValueError("layout 'coordinates' needs a coordinates file")
    x, y = layout_lib.load_coordinates(coordinates)
  else:
    raise ValueError(f"layout must be 'magnification', 'cortex' or 'coordinates', got {layout!r}")
  sim = simulator_lib.Simulator.create(p, x, y, key=k_sim)
  if sim.num_phosphenes == 0:
    raise ValueError("no phosphene lies in the simulated view")
  return sim


def frame_to_mask(frame: np.ndarray, *, size: tuple[int, int], kind: str = "edges",
                  edge_gain: float = 3.0, invert: bool = False) -> np.ndarray:
  """An (H_in, W_in[, C]) frame -> (H, W) float32 activation mask in [0, 1].

  Args:
    frame: uint8 or float in [0, 1]; RGB(A) is converted to luma.
    size: (H, W) of the mask.
    kind: 'intensity' (the luma) or 'edges' (Sobel magnitude; a full
      contrast step gives 1 before `edge_gain`).
    edge_gain: multiplies the edge strength before clipping to [0, 1].
    invert: use 1 - luma (dark objects stimulate).
  """
  if kind not in ("edges", "intensity"):
    raise ValueError(f"mask kind must be 'edges' or 'intensity', got {kind!r}")
  frame = np.asarray(frame)
  gray = frame.astype(np.float32)
  if frame.dtype == np.uint8:
    gray /= 255.0
  if gray.ndim == 3 and gray.shape[-1] >= 3:
    gray = gray[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
  elif gray.ndim == 3:
    gray = gray[..., 0]
  if gray.ndim != 2:
    raise ValueError(f"frame must be (H, W) or (H, W, C), got {frame.shape}")
  h, w = size
  gray = np.asarray(Image.fromarray(gray).resize((w, h), Image.BILINEAR), np.float32)
  if invert:
    gray = 1.0 - gray
  if kind == "intensity":
    return np.clip(gray, 0.0, 1.0)
  magnitude = np.hypot(ndimage.sobel(gray, axis=0), ndimage.sobel(gray, axis=1))
  return np.clip(magnitude / 4.0 * edge_gain, 0.0, 1.0).astype(np.float32)


@jax.jit
def _frame_step(sim, state, mask):
  amplitude = sim.sample_stimulus(mask, rescale=True)
  return sim.step(state, amplitude)


def render_frames(sim: simulator_lib.Simulator, frames, **mask_kwargs,
                  ) -> Iterator[np.ndarray]:
  """Phosphene frames (H, W) uint8 for an iterable of video frames."""
  state = sim.init_state()
  for frame in frames:
    mask = frame_to_mask(frame, size=sim.resolution, **mask_kwargs)
    state, image = _frame_step(sim, state, jnp.asarray(mask))
    yield np.asarray(np.round(np.asarray(image) * 255), np.uint8)


def render_image(sim: simulator_lib.Simulator, frame: np.ndarray, *,
                 frames_per_image: int = 10, **mask_kwargs) -> np.ndarray:
  """A still image after `frames_per_image` frames of stimulation, uint8."""
  if frames_per_image < 1:
    raise ValueError(f"frames_per_image must be >= 1, got {frames_per_image}")
  *_, last = render_frames(sim, [frame] * frames_per_image, **mask_kwargs)
  return last


def _read_image(path: pathlib.Path) -> np.ndarray:
  try:
    with Image.open(path) as im:
      return np.asarray(im.convert("RGB"))
  except Exception as e:  # PIL raises many types for corrupt files.
    raise ValueError(f"{path}: not a readable image ({e})") from e


def _video_reader(path: pathlib.Path):
  try:
    meta = iio.immeta(path, exclude_applied=False)
  except Exception as e:
    raise ValueError(f"{path}: not a readable video ({e})") from e
  fps = meta.get("fps") or (1000.0 / meta["duration"] if meta.get("duration") else 25.0)
  count = None
  try:
    count = iio.improps(path).shape[0]
  except Exception:  # Frame count is only for the progress bar.
    pass

  def frames():
    try:
      for frame in iio.imiter(path):
        yield frame
    except Exception as e:
      raise ValueError(f"{path}: cannot decode video ({e})") from e
  return frames(), float(fps), count


def check_paths(input_path, output_path) -> tuple[pathlib.Path, pathlib.Path, bool]:
  """Validates an input/output pair; returns (input, output, is_video).

  Raises:
    FileNotFoundError: the input does not exist.
    ValueError: an unknown suffix, or an image written as video (or the
      reverse).
  """
  src, dst = pathlib.Path(input_path), pathlib.Path(output_path)
  if not src.is_file():
    raise FileNotFoundError(f"input not found: {src}")
  is_video = src.suffix.lower() in VIDEO_SUFFIXES
  if not is_video and src.suffix.lower() not in IMAGE_SUFFIXES:
    raise ValueError(f"{src}: unknown input type {src.suffix!r}; images: "
                     f"{sorted(IMAGE_SUFFIXES)}, videos: {sorted(VIDEO_SUFFIXES)}")
  wanted = VIDEO_SUFFIXES if is_video else IMAGE_SUFFIXES
  if dst.suffix.lower() not in wanted:
    raise ValueError(f"{dst}: output of a {'video' if is_video else 'image'} must end in "
                     f"one of {sorted(wanted)}")
  return src, dst, is_video


def render_file(sim: simulator_lib.Simulator, input_path, output_path, *,
                frames_per_image: int = 10, max_frames: int | None = None,
                progress: bool = True, **mask_kwargs) -> dict[str, Any]:
  """Renders the phosphene version of an image or video file.

  The kind of input and output follows the file suffixes: images
  (`IMAGE_SUFFIXES`) give a grayscale image, videos (`VIDEO_SUFFIXES`)
  a video at the input's frame rate.

  Returns:
    A summary dict (input, output, frames, resolution).

  Raises:
    FileNotFoundError: the input does not exist.
    ValueError: unknown suffixes, an image written as video (or the
      reverse), or an unreadable input.
  """
  src, dst, is_video = check_paths(input_path, output_path)
  dst.parent.mkdir(parents=True, exist_ok=True)
  if not is_video:
    image = render_image(sim, _read_image(src), frames_per_image=frames_per_image,
                         **mask_kwargs)
    Image.fromarray(image).save(dst)
    return {"input": str(src), "output": str(dst), "frames": 1,
            "resolution": list(sim.resolution)}
  frames, fps, count = _video_reader(src)
  if max_frames is not None:
    count = min(count, max_frames) if count else max_frames
    frames = (f for i, f in zip(range(max_frames), frames))
  kwargs = ({"duration": 1000.0 / fps, "loop": 0} if dst.suffix.lower() == ".gif"
            else {"fps": fps, "codec": "libx264", "macro_block_size": 1})
  written = 0
  with imageio.get_writer(dst, **kwargs) as writer:
    for image in tqdm(render_frames(sim, frames, **mask_kwargs), total=count,
                      unit="frame", disable=not progress, desc=src.name):
      writer.append_data(image)
      written += 1
  if written == 0:
    dst.unlink(missing_ok=True)
    raise ValueError(f"{src}: the video has no frames")
  return {"input": str(src), "output": str(dst), "frames": written, "fps": fps,
          "resolution": list(sim.resolution)}
