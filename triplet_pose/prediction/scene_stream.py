"""Several people per frame: model, grouping and the phosphene scene, one frame at a time.

    pipeline = ScenePipeline.from_workdirs("/tmp/scenes", renderer=PhospheneRenderer())
    for live in pipeline.run(frames):    # any iterable of (H, W, 3) uint8 RGB
      show(live.picture)                 # input with the persons | phosphenes of the scene

Per frame (`process`), the stages timed in `SceneFrame.seconds`:

* crop: the frame letterboxed to the model's square input (`predictor.crop`,
  around `box` when given);
* model: the associative-embedding model (jitted), last-stack heatmaps and tags;
* decode: peak NMS and top-k per joint (`grouping.decode`, jitted);
* group: grouping and refinement (`grouping.group`, `grouping.refine`, host
  and scipy), persons mapped back to frame pixels, strongest first;
* contour: with a triplet model, every person's contour points
  (`top_down.contours_per_person`, on the frame);
* phosphenes: the scene's stimulus drawn at the phosphenes' pixels only
  (`phosphenes.scene.scene_stimulus`: nearer people, by joint-box size,
  hide farther ones) and one simulator step per representation, the tissue
  state carried from frame to frame (jitted);
* picture: the input with the persons in distinct colours | the phosphenes.

Grouping runs on the host between the model and the simulator, so frames
go one at a time (no chunks as in `stream.PhospheneStream`). The jitted
functions see fixed shapes (the scene holds `max_persons` rows; the triplet
model runs on a multiple of `max_persons` crops), so they compile once, at
the first frame (`warm_up`, kept out of the stage times). `analyse` is the
same work up to the persons, for still images. benchmarks/scenes_video.py
times this class.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Iterable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
from PIL import ImageDraw

from triplet_pose import config_files
from triplet_pose import grouping
from triplet_pose import inference
from triplet_pose import keypoints as kp
from triplet_pose import top_down
from triplet_pose import transforms
from triplet_pose import workdir as workdir_lib
from triplet_pose.models import associative_embedding
from triplet_pose.phosphenes import scene as scene_lib
from triplet_pose.prediction import predictor as predictor_lib
from triplet_pose.prediction import renderer as renderer_lib
from triplet_pose.prediction import scenes
from triplet_pose.prediction import stream as stream_lib
from triplet_pose.viz import scenes as scene_viz


def holds_several_people(workdir: str) -> bool:
  """Whether `workdir`'s model finds several people (`model.target` is
  associative embedding), from its config.json.

  Raises:
    FileNotFoundError: no config.json in `workdir`.
  """
  return config_files.load_config(workdir).model.target == associative_embedding.TARGET


@dataclasses.dataclass
class ScenePersons:
  """The persons of one image.

  Attributes:
    crop: (S, S, 3) uint8 model input.
    crop_to_original: (2, 3) affine from crop to original pixels.
    persons: (P, 16, 3) x, y, score in original pixels (NaN: not found),
      strongest (mean score) first.
    contours: (P, 26, 3) x, y, confidence in original pixels, or None
      without a triplet model.
    depth: (P,) depth rank, 0 = nearest (`scenes.depth_by_size`).
  """
  crop: np.ndarray
  crop_to_original: np.ndarray
  persons: np.ndarray
  contours: np.ndarray | None
  depth: np.ndarray

  def in_crop(self, points: np.ndarray | None) -> np.ndarray | None:
    """(..., 2 or 3) points of original pixels in crop pixels (scores kept)."""
    if points is None:
      return None
    points = np.asarray(points, np.float64)
    xy = transforms.apply_affine(transforms.invert_affine(self.crop_to_original),
                                 points[..., :2])
    return np.concatenate([xy, points[..., 2:]], axis=-1)


@dataclasses.dataclass
class SceneFrame:
  """One processed video frame.

  Attributes:
    index: frame number in the stream, from 0.
    found: its persons (`ScenePersons`).
    phosphenes: {representation: (H, W) uint8}: 'joints' (the skeletons)
      and, with a triplet model, 'contour'.
    picture: (H, W * (1 + representations), 3) uint8.
    seconds: wall time of each stage (see the module docstring).
  """
  index: int
  found: ScenePersons
  phosphenes: dict[str, np.ndarray]
  picture: np.ndarray
  seconds: dict[str, float]


class _Laps:
  """Records the time since the previous lap under each stage's name."""

  def __init__(self, seconds: dict[str, float]):
    self.seconds, self._last = seconds, time.perf_counter()

  def __call__(self, stage: str) -> None:
    now = time.perf_counter()
    self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self._last
    self._last = now


class ScenePipeline:
  """Frames to grouped persons and phosphenes of the scene, state carried over.

  Args:
    loaded: the associative-embedding model (`workdir.load_model`).
    renderer: the simulator and drawing styles.
    triplet: a triplet (contour) model, run top-down on every person, or None.
    options: grouping settings (default the workdir's: `scenes.grouping_options`,
      its tuned grouping where one was recorded for this checkpoint).
    box: inclusive (x0, y0, x1, y1) in frame pixels: crop around it
      (default the whole frame).
    max_persons: people in the phosphene scene, the strongest (default the
      model's `input.max_persons`); every person found is in the records.

  Raises:
    ValueError: a model of another kind.
  """

  def __init__(self, loaded: workdir_lib.LoadedModel, *,
               renderer: renderer_lib.PhospheneRenderer,
               triplet: workdir_lib.LoadedModel | None = None,
               options: grouping.GroupingOptions | None = None,
               box: Sequence[float] | None = None, max_persons: int | None = None):
    if loaded.target != associative_embedding.TARGET:
      raise ValueError(f"{loaded.workdir} holds a model.target={loaded.target!r} model, "
                       f"expected {associative_embedding.TARGET!r}")
    self.loaded, self.renderer, self.box = loaded, renderer, box
    self.size = int(loaded.config.input.image_size)
    self.fill = predictor_lib.padding_fill(loaded.config.input)
    self.options = options or scenes.grouping_options(loaded.workdir, step=loaded.step,
                                                      config=loaded.config)
    self.max_persons = int(max_persons or loaded.config.input.get("max_persons", 4))
    self._maps = jax.jit(functools.partial(_last_stack_maps, loaded.model,
                                           scales=self.options.scales,
                                           map_scale=self.options.map_scale))
    self._triplet = None
    if triplet is not None:
      models = inference.PoseModels(triplet=triplet)
      self._triplet = (inference.make_inference_fn(models, ground_truth_joints=True),
                       models.variables(), models.image_size)
    self.names = (kp.JOINTS.name,) + ((kp.CONTOUR.name,) if triplet is not None else ())
    self._phosphenes = jax.jit(functools.partial(
        _scene_step, styles={n: renderer.styles[n] for n in self.names},
        image_size=(self.size, self.size)))
    self.times = stream_lib.StageTimes()
    self._warm = False
    self._count, self._states = 0, None

  @classmethod
  def from_workdirs(cls, workdir: str, triplet_workdir: str | None = None,
                    **kwargs) -> "ScenePipeline":
    """Loads the models of a `configs/scenes.py` workdir (and a triplet workdir)."""
    loaded = workdir_lib.load_model(workdir, expect=associative_embedding.TARGET)
    triplet = (workdir_lib.load_model(triplet_workdir, expect=kp.CONTOUR.name)
               if triplet_workdir else None)
    return cls(loaded, triplet=triplet, **kwargs)

  def warm_up(self) -> None:
    """Compiles every jitted function on inputs of the shapes frames give."""
    if self._warm:
      return
    start = time.perf_counter()
    maps, tags = self._maps(self.loaded.variables,
                            jnp.zeros((1, self.size, self.size, 3), jnp.uint8))
    jax.block_until_ready(grouping.decode(maps, tags, top_k=self.options.top_k,
                                          nms_kernel=self.options.nms_kernel))
    if self._triplet is not None:
      fn, variables, size = self._triplet
      m = self.max_persons
      jax.block_until_ready(fn(variables, np.zeros((m, size, size, 3), np.uint8),
                               np.zeros((m, kp.NUM_JOINTS, 2), np.float32),
                               np.zeros((m, kp.NUM_JOINTS), np.float32)))
    empty = self._scene_inputs(ScenePersons(
        None, np.eye(2, 3), np.zeros((0, kp.NUM_JOINTS, 3)),
        np.zeros((0, kp.NUM_CONTOUR, 3)) if self._triplet else None, np.zeros(0, int)))
    states = self.renderer.init_state(self.names)
    jax.block_until_ready(self._phosphenes(self.renderer.sim, self.renderer.pixels, states,
                                           *empty))
    self.times.compile_seconds += time.perf_counter() - start
    self._warm = True

  def analyse(self, image: np.ndarray, seconds: dict[str, float] | None = None
              ) -> ScenePersons:
    """The persons of one (H, W, 3) uint8 image (stages crop to contour).

    Args:
      image: the frame or image.
      seconds: adds each stage's wall time here when given.
    """
    self.warm_up()
    laps = _Laps({} if seconds is None else seconds)
    crop, to_original = predictor_lib.crop(image, self.size, box=self.box, fill=self.fill)
    laps("crop")
    maps, tags = jax.block_until_ready(self._maps(self.loaded.variables,
                                                  jnp.asarray(crop[None])))
    laps("model")
    found = jax.device_get(grouping.decode(maps, tags, top_k=self.options.top_k,
                                           nms_kernel=self.options.nms_kernel))
    maps, tags = np.asarray(maps[0]), np.asarray(tags[0])
    laps("decode")
    persons = grouping.image_persons(found["xy"][0], found["score"][0], found["tag"][0], maps,
                                     tags, options=self.options)
    persons = grouping.to_pixels(persons, maps.shape[0], self.size)
    order = np.argsort(-np.nanmean(persons[..., 2], axis=-1), kind="stable")
    persons = _to_original(persons[order], to_original)
    laps("group")
    contours = None
    if self._triplet is not None:
      contours = self._contours(image, persons)
      laps("contour")
    return ScenePersons(crop, to_original, persons, contours, scenes.depth_by_size(persons))

  def _contours(self, image: np.ndarray, persons: np.ndarray) -> np.ndarray:
    fn, variables, size = self._triplet
    n = len(persons)
    if not n:
      return np.zeros((0, kp.NUM_CONTOUR, 3))
    # Padded with copies of the first person to a multiple of max_persons:
    # the triplet model compiles once, not once per count of people.
    rows = -(-n // self.max_persons) * self.max_persons
    padded = np.concatenate([persons, np.repeat(persons[:1], rows - n, axis=0)])
    return top_down.contours_per_person(fn, variables, image, padded, size=size)[:n]

  def _scene_inputs(self, found: ScenePersons):
    """(points, visible, persons_valid, depth) of the `max_persons` strongest
    persons in crop pixels, padded to `max_persons` rows (fixed shapes)."""
    m = self.max_persons
    n = min(len(found.persons), m)
    shown = found.in_crop(found.persons[:n]) if n else np.zeros((0, kp.NUM_JOINTS, 3))
    joints = np.zeros((m, kp.NUM_JOINTS, 2), np.float32)
    joints[:n] = np.nan_to_num(shown[..., :2])
    visible = np.zeros((m, kp.NUM_JOINTS), np.float32)
    visible[:n] = np.isfinite(shown).all(-1)
    points, vis = {kp.JOINTS.name: joints}, {kp.JOINTS.name: visible}
    if found.contours is not None:
      contour = np.zeros((m, kp.NUM_CONTOUR, 2), np.float32)
      if n:
        contour[:n] = found.in_crop(found.contours[:n])[..., :2]
      points[kp.CONTOUR.name] = contour
      vis[kp.CONTOUR.name] = np.repeat((np.arange(m) < n)[:, None], kp.NUM_CONTOUR,
                                       axis=1).astype(np.float32)
    depth = np.full(m, m, np.int32)
    depth[:n] = np.argsort(np.argsort(found.depth[:n], kind="stable"))  # ranks of those shown
    return points, vis, (np.arange(m) < n).astype(np.float32), depth

  def reset(self) -> None:
    """Starts from resting tissue, frame 0 and new `times` (a new video)."""
    self._count, self._states = 0, None
    self.times = stream_lib.StageTimes()

  def process(self, frame: np.ndarray) -> SceneFrame:
    """One (H, W, 3) uint8 frame through every stage; the state runs on."""
    self.warm_up()
    seconds: dict[str, float] = {}
    found = self.analyse(frame, seconds)
    laps = _Laps(seconds)
    if self._states is None:
      self._states = self.renderer.init_state(self.names)
    self._states, images = self._phosphenes(self.renderer.sim, self.renderer.pixels,
                                            self._states, *self._scene_inputs(found))
    images = jax.device_get(images)
    laps("phosphenes")
    picture = scene_picture(found.crop, found.in_crop(found.persons), images,
                            contours=found.in_crop(found.contours))
    laps("picture")
    for stage, value in seconds.items():
      self.times.add(stage, value)
    self.times.frames += 1
    live = SceneFrame(self._count, found, images, picture, seconds)
    self._count += 1
    return live

  def run(self, frames: Iterable[np.ndarray]) -> Iterator[SceneFrame]:
    """Yields a `SceneFrame` per frame of `frames` (a generator; the time
    spent pulling each frame is the stage 'read' of `times`)."""
    iterator = iter(frames)
    while True:
      start = time.perf_counter()
      frame = next(iterator, None)
      self.times.add("read", time.perf_counter() - start)
      if frame is None:
        return
      yield self.process(np.asarray(frame, np.uint8))


def _last_stack_maps(model, variables, crops, *, scales, map_scale):
  return inference.predict_scene_maps(functools.partial(model.apply, train=False), variables,
                                      crops.astype(jnp.float32) / 255.0, flip_test=False,
                                      scales=scales, map_scale=map_scale)


def _to_original(persons: np.ndarray, crop_to_original: np.ndarray) -> np.ndarray:
  xy = transforms.apply_affine(np.asarray(crop_to_original, np.float64), persons[..., :2])
  return np.concatenate([xy, persons[..., 2:]], axis=-1)


def _scene_step(sim, pixels, states, points, visible, valid, depth, *, styles, image_size):
  """One frame of every representation's scene (jitted): (new states, {name: uint8 image}).

  The skeletons are drawn from the joints (their bodies are wide
  skeletons); the contour from the joints and contour points (bodies
  filled from the contour), as `scenes.scene_row` draws them.
  """
  new, images = {}, {}
  for name, style in styles.items():
    keys = (kp.JOINTS.name,) if name == kp.JOINTS.name else tuple(points)
    amplitude = scene_lib.scene_stimulus({k: points[k] for k in keys}, pixels,
                                         image_size=image_size,
                                         visible={k: visible[k] for k in keys},
                                         persons_valid=valid, depth=depth, style=style)
    new[name], image = sim.step(states[name], amplitude)
    images[name] = jnp.round(jnp.clip(image, 0, 1) * 255).astype(jnp.uint8)
  return new, images


def scene_picture(crop: np.ndarray, persons: np.ndarray, phosphenes: dict[str, np.ndarray],
                  *, contours: np.ndarray | None = None) -> np.ndarray:
  """The input with every person in its colour, then each scene's phosphenes.

  Args:
    crop: (S, S, 3) uint8 model input; resized to the phosphenes' size.
    persons: (P, 16, 3) in crop pixels (NaN: missing); person p is drawn in
      `viz.scenes.PERSON_COLOURS[p]` (cycled), skeleton lines and joints.
    phosphenes: {representation: (H, W) uint8}.
    contours: (P, 26, 2 or 3) in crop pixels, dotted in the person's colour.

  Returns:
    (H, W * (1 + len(phosphenes)), 3) uint8.
  """
  h, w = next(iter(phosphenes.values())).shape
  pil = Image.fromarray(np.asarray(crop, np.uint8)).resize((w, h), Image.BILINEAR)
  draw = ImageDraw.Draw(pil)
  scale = np.array([w / crop.shape[1], h / crop.shape[0]])
  width = max(1, round(h / 128))
  for p, person in enumerate(np.asarray(persons, np.float64)):
    colour = scene_viz.PERSON_COLOURS[p % len(scene_viz.PERSON_COLOURS)]
    xy = (person[:, :2] + 0.5) * scale - 0.5
    found = np.isfinite(person).all(-1)
    for a, b in kp.SKELETON_EDGES:
      if found[a] and found[b]:
        draw.line([tuple(xy[a]), tuple(xy[b])], fill=colour, width=width)
    dots = [xy[found]]
    if contours is not None:
      dots.append((np.asarray(contours[p])[:, :2] + 0.5) * scale - 0.5)
    for x, y in np.concatenate(dots):
      draw.ellipse([x - width, y - width, x + width, y + width], fill=colour)
  columns = [np.asarray(pil)]
  columns += [np.repeat(np.asarray(v, np.uint8)[..., None], 3, axis=-1)
              for v in phosphenes.values()]
  return np.concatenate(columns, axis=1)
