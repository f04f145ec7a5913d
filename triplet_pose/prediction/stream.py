"""Live video: frames -> pose -> phosphenes, one jitted function per chunk of frames.

    stream = prediction.PhospheneStream(predictor, renderer, batch_size=1)
    for live in stream.run(frames):      # any iterable of (H, W, 3) uint8 RGB
      show(live.picture)                 # input with the pose | phosphenes

Per chunk of `batch_size` frames, one call of a jitted function does the
whole per-frame work: crop (an integer box reduction, then a bilinear warp,
as `predictor.crop` does with PIL), the joint (+ triplet) model with flip
test, heatmap decoding, the pose masks, electrode sampling, the simulator
(a `lax.scan` over the chunk's frames, its tissue state carried from chunk
to chunk) and the side-by-side picture. The pose is drawn at the
phosphenes' sample pixels only (`phosphenes.pose_stimulus`), not as a whole
mask. Only decoding before and encoding
after run on the host; matplotlib panels are not on this path.

`batch_size=1` gives the least latency (a camera loop); larger chunks give
more frames per second for files. A short last chunk is padded, and the
padding frames leave the carried state untouched.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import time
from typing import Any, Iterable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from triplet_pose import transforms
from triplet_pose.prediction import predictor as predictor_lib
from triplet_pose.prediction import renderer as renderer_lib
from triplet_pose.prediction import writers


@dataclasses.dataclass
class LiveFrame:
  """One processed frame; mappings keyed by keypoint set name.

  Attributes:
    index: frame number in the stream, from 0.
    keypoints: {set: (K, 2)} in original frame pixels.
    confidence: {set: (K,)} heatmap peaks.
    phosphenes: {set: (H, W) uint8} simulated phosphene images.
    picture: (H, W * (1 + sets), 3) uint8: the input with the keypoints
      dotted over it, then the phosphenes of each set.
    crop_to_original: (2, 3) affine from crop to frame pixels.
  """
  index: int
  keypoints: dict[str, np.ndarray]
  confidence: dict[str, np.ndarray]
  phosphenes: dict[str, np.ndarray]
  picture: np.ndarray
  crop_to_original: np.ndarray


class StageTimes:
  """Wall time per stage, accumulated over frames.

  The jitted call of a new frame size compiles: it is kept apart
  (`compile_seconds`), so the stages and frames/s are those of the steady
  state (the frames of that call count, at no pose+phosphenes time).
  """

  def __init__(self):
    self.seconds: dict[str, float] = collections.defaultdict(float)
    self.frames = 0
    self.compile_seconds = 0.0

  def add(self, stage: str, seconds: float) -> None:
    self.seconds[stage] += seconds

  def per_frame_ms(self) -> dict[str, float]:
    return {k: 1000.0 * v / max(self.frames, 1) for k, v in self.seconds.items()}

  def summary(self) -> str:
    """E.g. '100 frames: decode 1.2 ms, ... per frame; 26.3 frames/s (+ 9.1 s compiling)'."""
    total = sum(self.seconds.values())
    stages = ", ".join(f"{k} {v:.1f} ms" for k, v in self.per_frame_ms().items())
    fps = self.frames / total if total > 0 else float("nan")
    return (f"{self.frames} frames: {stages} per frame; {fps:.1f} frames/s "
            f"(+ {self.compile_seconds:.1f} s compiling)")


class PhospheneStream:
  """Frames to pose and phosphenes with the simulator's state carried over.

  Args:
    predictor: the pose models (`Predictor`); its `flip_test` applies.
    renderer: the simulator and drawing styles (`PhospheneRenderer`).
    box: inclusive (x0, y0, x1, y1) crop box in frame pixels; default the
      whole frame.
    batch_size: frames per jitted call.
  """

  def __init__(self, predictor: predictor_lib.Predictor,
               renderer: renderer_lib.PhospheneRenderer, *,
               box: Sequence[float] | None = None, batch_size: int = 1):
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    self.predictor, self.renderer = predictor, renderer
    self.box, self.batch_size = box, batch_size
    self.times = StageTimes()
    self._fns: dict[tuple[int, int], Any] = {}
    self._count = 0
    self._states = None

  def reset(self) -> None:
    """Starts from resting tissue and frame 0 (a new video)."""
    self._count, self._states = 0, None

  def _function(self, shape: tuple[int, int]):
    """(jitted chunk function, `CropGeometry`) for frames of `shape`."""
    if shape not in self._fns:
      geometry = crop_geometry(shape, self.predictor.image_size, self.box)
      fn = jax.jit(functools.partial(_chunk, setup=ChunkSetup(
          infer=self.predictor.infer, renderer=self.renderer,
          size=self.predictor.image_size, factor=geometry.factor,
          fill=tuple(float(v) for v in self.predictor.fill))))
      self._fns[shape] = fn, geometry
    return self._fns[shape]

  def process(self, frames: Sequence[np.ndarray]) -> list[LiveFrame]:
    """One chunk of at most `batch_size` frames of one shape, in order."""
    n = len(frames)
    if not 0 < n <= self.batch_size:
      raise ValueError(f"a chunk holds 1 to {self.batch_size} frames, got {n}")
    start = time.perf_counter()
    compiles = tuple(frames[0].shape[:2]) not in self._fns
    fn, geometry = self._function(tuple(frames[0].shape[:2]))
    to_original = geometry.crop_to_original
    batch = np.stack(frames)
    if n < self.batch_size:
      batch = np.concatenate([batch, np.zeros((self.batch_size - n,) + batch.shape[1:],
                                              batch.dtype)])
    if self._states is None:
      self._states = self.renderer.init_state(self.predictor.keypoint_names)
    valid = jnp.arange(self.batch_size) < n
    affine = jnp.asarray(geometry.reduced_affine, jnp.float32)
    self._states, out = fn(self.predictor.variables, self.renderer.sim, self.renderer.pixels,
                           self._states, jnp.asarray(batch), affine, valid)
    out = jax.device_get(out)
    if compiles:
      self.times.compile_seconds += time.perf_counter() - start
    else:
      self.times.add("pose+phosphenes", time.perf_counter() - start)
    start = time.perf_counter()
    names = list(out["keypoints"])
    original = {k: transforms.apply_affine(to_original, v[:n].astype(np.float64))
                for k, v in out["keypoints"].items()}
    live = [LiveFrame(self._count + i, {k: original[k][i] for k in names},
                      {k: out["confidence"][k][i] for k in names},
                      {k: out["phosphenes"][k][i] for k in names},
                      out["picture"][i], to_original) for i in range(n)]
    self._count += n
    self.times.frames += n
    self.times.add("keypoints", time.perf_counter() - start)
    return live

  def run(self, frames: Iterable[np.ndarray]) -> Iterator[LiveFrame]:
    """Yields a `LiveFrame` per frame of `frames` (a generator: frames are pulled
    in chunks of `batch_size`; a change of frame size ends a chunk early)."""
    iterator = iter(frames)
    chunk: list[np.ndarray] = []
    while True:
      start = time.perf_counter()
      frame = next(iterator, None)
      self.times.add("decode", time.perf_counter() - start)
      if chunk and (frame is None or frame.shape != chunk[0].shape
                    or len(chunk) == self.batch_size):
        yield from self.process(chunk)
        chunk = []
      if frame is None:
        return
      chunk.append(np.asarray(frame, np.uint8))


@dataclasses.dataclass(frozen=True)
class CropGeometry:
  """Where the model input of a frame comes from.

  Attributes:
    factor: integer box reduction of the frame before the warp (1: none).
    reduced_affine: (2, 3) reduced-frame -> crop pixels.
    crop_to_original: (2, 3) crop -> frame pixels.
  """
  factor: int
  reduced_affine: np.ndarray
  crop_to_original: np.ndarray


def crop_geometry(shape: Sequence[int], size: int,
                  box: Sequence[float] | None = None) -> CropGeometry:
  """The crop of `predictor.crop` for frames of `shape`, as `crop_frames` does it.

  As `transforms.warp_image_np`: strong downscaling starts with an integer
  box reduction, so a large frame does not alias.
  """
  affine = predictor_lib.crop_affine(shape, size, box)
  zoom = float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))
  factor = int(np.floor(1.0 / zoom)) if zoom < 0.5 else 1
  if factor > 1 and min(shape[:2]) < 2 * factor:
    factor = 1
  reduced = affine
  if factor > 1:
    # Pixel-centre x of the frame is (x + 0.5) / factor - 0.5 once reduced.
    reduce = transforms.scale_translate_affine(np.full(2, 1.0 / factor),
                                               np.full(2, 0.5 / factor - 0.5))
    reduced = transforms.compose_affines(affine, transforms.invert_affine(reduce))
  return CropGeometry(factor, np.asarray(reduced), transforms.invert_affine(affine))


def crop_frames(frames: jax.Array, affine: jax.Array, *, size: int, factor: int,
                fill: tuple[float, float, float]) -> jax.Array:
  """(T, H, W, 3) uint8 frames -> (T, size, size, 3) uint8 crops (jittable).

  `affine` maps pixels of the frames reduced by `factor` (box average) to
  crop pixels.
  """
  x = frames.astype(jnp.float32)
  if factor > 1:
    t, h, w, c = x.shape
    h2, w2 = h // factor, w // factor
    x = x[:, :h2 * factor, :w2 * factor].reshape(t, h2, factor, w2, factor, c).mean((2, 4))
  warp = functools.partial(transforms.warp_image, affine=affine, out_height=size,
                           out_width=size, fill=jnp.asarray(fill, jnp.float32))
  crops = jax.vmap(lambda image: warp(image))(x)
  return jnp.round(jnp.clip(crops, 0, 255)).astype(jnp.uint8)


@dataclasses.dataclass(frozen=True)
class ChunkSetup:
  """What the jitted chunk function is built for (fixed per frame shape).

  Attributes:
    infer: the models' `inference.make_inference_fn` function.
    renderer: the `PhospheneRenderer` (its stimulus function).
    size: the models' input side, pixels.
    factor: the box reduction of the frames before the crop (`CropGeometry`).
    fill: RGB of the crop outside the frame.
  """
  infer: Any
  renderer: renderer_lib.PhospheneRenderer
  size: int
  factor: int
  fill: tuple[float, float, float]


def _chunk(variables, sim, pixels, states, frames, affine, valid, *, setup: ChunkSetup):
  """The jitted per-chunk work (see the module docstring)."""
  size = setup.size
  crops = crop_frames(frames, affine, size=size, factor=setup.factor, fill=setup.fill)
  out = setup.infer(variables, crops)
  amplitudes = setup.renderer.stimulus(pixels, out["keypoints"], image_size=(size, size))

  def frame_step(carry, xs):
    amplitude, ok = xs
    new, images = {}, {}
    for name, a in amplitude.items():
      state, images[name] = sim.step(carry[name], a)
      # Padding frames (ok False) leave the tissue as it was.
      new[name] = jax.tree.map(lambda n, o: jnp.where(ok, n, o), state, carry[name])
    return new, images

  states, images = jax.lax.scan(frame_step, states, (amplitudes, valid))
  phosphenes = {k: jnp.round(jnp.clip(v, 0, 1) * 255).astype(jnp.uint8)
                for k, v in images.items()}
  picture = jax.vmap(writers.side_by_side)(crops, phosphenes, out["keypoints"])
  return states, {"keypoints": out["keypoints"], "confidence": out["confidence"],
                  "phosphenes": phosphenes, "picture": picture}
