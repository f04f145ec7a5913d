"""Files in, files out: a file, folder or video -> JSON records, panels and videos.

Images: `<stem>.json` and `<stem>_panel.png`. Videos go through the live
path (`stream.PhospheneStream`): `<stem>.json` (every frame's keypoints),
`<stem>_phosphenes.mp4` (input with the pose | phosphenes of each set) and,
with `video_panels`, `<stem>_panel.mp4` (the matplotlib panels: slow). An
unreadable file is reported and skipped; it never stops the folder.
"""

from __future__ import annotations

import pathlib
import time
from typing import Any, Iterable, Iterator, Sequence

from absl import logging
import tqdm

from triplet_pose import keypoints as kp
from triplet_pose.prediction import predictor as predictor_lib
from triplet_pose.prediction import reading
from triplet_pose.prediction import renderer as renderer_lib
from triplet_pose.prediction import stream as stream_lib
from triplet_pose.prediction import writers


def output_stem(path: pathlib.Path, all_paths: Sequence[pathlib.Path]) -> str:
  """The name of `path`'s outputs: its stem, with its suffix when another input shares it."""
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


def predict_paths(predictor: predictor_lib.Predictor, input_path: str | pathlib.Path,
                  output_dir: str | pathlib.Path, *, box=None,
                  renderer: renderer_lib.PhospheneRenderer | None = None,
                  progress: bool = True, video_panels: bool = False,
                  video_batch_size: int = 1) -> dict[str, Any]:
  """Predicts every image and video under `input_path` into `output_dir`.

  Args:
    predictor: the pose models.
    input_path: an image, a video or a folder of them.
    output_dir: created if needed.
    box: crop box in original pixels (every input), or None.
    renderer: phosphenes for the image panels (None: no phosphenes there);
      videos always render phosphenes (their output), with the default
      `PhospheneRenderer` when None.
    progress: show progress bars.
    video_panels: also write the matplotlib panels of every video frame.
    video_batch_size: video frames per jitted call (1: the least latency;
      benchmarks/video.py measures larger chunks).

  Returns:
    {'processed': [input paths], 'failed': {input path: reason}, 'outputs':
    [paths], 'timings': {video path: per-stage times and frames/s}}.
  """
  output_dir = pathlib.Path(output_dir)
  output_dir.mkdir(parents=True, exist_ok=True)
  paths = reading.list_inputs(input_path)
  videos = [p for p in paths if reading.is_video(p)]
  images = [p for p in paths if p not in videos]
  summary = {"processed": [], "failed": {}, "outputs": [], "timings": {}}

  def fail(path, error):
    summary["failed"][str(path)] = str(error)
    logging.warning("skipped %s", error)

  def readable(paths_):
    for p in paths_:
      try:
        yield p, reading.load_image(p)
      except reading.UnreadableInputError as e:
        fail(p, e)

  bar = tqdm.tqdm(total=len(images), desc="images", unit="img", disable=not progress)
  for chunk in _batched(readable(images), predictor.batch_size):
    preds = predictor.predict([im for _, im in chunk], [box] * len(chunk))
    for (path, image), pred in zip(chunk, preds):
      stem = output_stem(path, paths)
      record = writers.prediction_record(pred, source=str(path), image_shape=image.shape,
                                         box=box)
      png_path = output_dir / f"{stem}_panel.png"
      writers.save_png(writers.panel(pred, renderer, title=path.name), png_path)
      summary["processed"].append(str(path))
      summary["outputs"] += [writers.write_json(output_dir / f"{stem}.json", record),
                             str(png_path)]
    bar.update(len(chunk))
  bar.update(len(images) - bar.n)
  bar.close()
  if videos and renderer is None:
    renderer = renderer_lib.PhospheneRenderer()
  for path in videos:
    try:
      live = stream_lib.PhospheneStream(predictor, renderer, box=box,
                                        batch_size=video_batch_size)
      summary["outputs"] += predict_video(live, path, output_dir,
                                          stem=output_stem(path, paths),
                                          progress=progress, panels=video_panels)
      summary["processed"].append(str(path))
      summary["timings"][str(path)] = live.times.summary()
    except reading.UnreadableInputError as e:
      fail(path, e)
  return summary


def predict_video(live: stream_lib.PhospheneStream, path: pathlib.Path,
                  output_dir: pathlib.Path, *, stem: str, progress: bool = True,
                  panels: bool = False) -> list[str]:
  """A video -> `<stem>.json`, `<stem>_phosphenes.mp4` (and `<stem>_panel.mp4`).

  The simulator's state runs on from frame to frame; `live.times` collects
  the time of every stage (decode, pose+phosphenes, keypoints, encode, json,
  and panels when drawn).

  Raises:
    UnreadableInputError: when the video cannot be decoded or has no frames.
  """
  fps = reading.video_fps(path)
  paths = {"json": output_dir / f"{stem}.json", "video": output_dir / f"{stem}_phosphenes.mp4",
           "panel": output_dir / f"{stem}_panel.mp4"}
  records, box = [], live.box
  video = writers.VideoWriter(paths["video"], fps=fps)
  panel_video = writers.VideoWriter(paths["panel"], fps=fps) if panels else None
  bar = tqdm.tqdm(desc=path.name, unit="frame", disable=not progress)
  frames = reading.iter_video_frames(path)
  if panels:  # The panels need each frame again: keep it beside the stream.
    kept = []
    frames = (kept.append(f) or f for f in frames)
  try:
    for frame in live.run(frames):
      start = time.perf_counter()
      video.append(frame.picture)
      live.times.add("encode", time.perf_counter() - start)
      start = time.perf_counter()
      records.append({"frame": frame.index, "time": frame.index / fps,
                      **{name: writers.keypoint_records(kp.get(name).names, frame.keypoints[name],
                                                        frame.confidence[name])
                         for name in frame.keypoints}})
      live.times.add("json", time.perf_counter() - start)
      if panels:
        start = time.perf_counter()
        image = kept.pop(0)
        pred = live.predictor.predict([image], [box])[0]
        picture = writers.panel(pred, None, title=f"{path.name} frame {frame.index}",
                                phosphene_images={k: (v / 255.0, None)
                                                  for k, v in frame.phosphenes.items()})
        panel_video.append(picture)
        live.times.add("panels", time.perf_counter() - start)
      bar.update(1)
  finally:
    bar.close()
    video.close()
    if panel_video is not None:
      panel_video.close()
  if not records:
    raise reading.UnreadableInputError(f"{path}: no frames could be read")
  first = live.predictor.image_size
  header = {"input": str(path), "fps": fps, "box": None if box is None else list(box),
            "crop_size": first, "crop_to_original": frame.crop_to_original.round(6).tolist()}
  start = time.perf_counter()
  writers.write_json(paths["json"], {**header, "frames": records})
  live.times.add("json", time.perf_counter() - start)
  return [str(paths["json"]), str(paths["video"])] + ([str(paths["panel"])] if panels else [])
