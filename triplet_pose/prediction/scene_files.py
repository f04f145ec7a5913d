"""Several people, files in, files out: images and videos -> persons and phosphene scenes.

Images: `<stem>.json` (every person found, in original pixels) and
`<stem>_panel.png` (`viz.scenes.scene_panel`: the model's input with the
persons in distinct colours, and each representation's phosphenes of the
whole scene). Videos go through `scene_stream.ScenePipeline`, frame by
frame with the simulator's state carried over: `<stem>.json` (every
frame's persons) and `<stem>_phosphenes.mp4` (the input with the persons |
the phosphenes of the scene). An unreadable file is reported and skipped,
as in `files.predict_paths`.

A person's record: `joints`, one [x, y, score] per MPII joint (`joint_names`
of the file) in original pixels, or null where it was not found; `score`,
the mean of its joints' scores; `depth`, its rank by joint-box size (0 =
nearest; `scenes.depth_by_size`); with a triplet model `contour`, 26
[x, y, confidence] (`contour_names`).
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Any

from absl import logging
import numpy as np
import tqdm

from triplet_pose import keypoints as kp
from triplet_pose import viz
from triplet_pose.prediction import files
from triplet_pose.prediction import reading
from triplet_pose.prediction import scene_stream
from triplet_pose.prediction import scenes
from triplet_pose.prediction import writers
from triplet_pose.viz import scenes as scene_viz


def _point(xyz) -> list[float] | None:
  if not np.isfinite(xyz).all():
    return None
  return [round(float(xyz[0]), 2), round(float(xyz[1]), 2), round(float(xyz[2]), 4)]


def person_records(found: scene_stream.ScenePersons) -> list[dict[str, Any]]:
  """The JSON records of an image's persons, strongest first (module docstring)."""
  records = []
  for p, person in enumerate(found.persons):
    scores = person[:, 2][np.isfinite(person).all(-1)]
    record = {"joints": [_point(j) for j in person],
              "score": round(float(scores.mean()), 4) if scores.size else None,
              "depth": int(found.depth[p])}
    if found.contours is not None:
      record["contour"] = [_point(c) for c in found.contours[p]]
    records.append(record)
  return records


def _header(pipeline: scene_stream.ScenePipeline, source: str) -> dict[str, Any]:
  names = {"joint_names": list(kp.JOINT_NAMES)}
  if kp.CONTOUR.name in pipeline.names:
    names["contour_names"] = list(kp.CONTOUR_NAMES)
  return {"input": source, "box": None if pipeline.box is None else list(pipeline.box),
          "crop_size": pipeline.size, "grouping": dataclasses.asdict(pipeline.options),
          "model": {"workdir": pipeline.loaded.workdir, "step": pipeline.loaded.step}, **names}


def predict_scene_paths(pipeline: scene_stream.ScenePipeline, input_path: str | pathlib.Path,
                        output_dir: str | pathlib.Path, *, phosphenes: bool = True,
                        progress: bool = True) -> dict[str, Any]:
  """Predicts every image and video under `input_path` into `output_dir`.

  Args:
    pipeline: the multi-person model (its box, grouping and renderer apply).
    input_path: an image, a video or a folder of them.
    output_dir: created if needed.
    phosphenes: draw the phosphenes of the scene in the image panels
      (videos always have them: the phosphene video is their output).
    progress: show progress bars.

  Returns:
    As `files.predict_paths`: {'processed', 'failed', 'outputs', 'timings'}.
  """
  output_dir = pathlib.Path(output_dir)
  output_dir.mkdir(parents=True, exist_ok=True)
  paths = reading.list_inputs(input_path)
  summary = {"processed": [], "failed": {}, "outputs": [], "timings": {}}
  images = [p for p in paths if not reading.is_video(p)]
  for path in tqdm.tqdm(images, desc="images", unit="img", disable=not progress):
    try:
      image = reading.load_image(path)
    except reading.UnreadableInputError as e:
      summary["failed"][str(path)] = str(e)
      logging.warning("skipped %s", e)
      continue
    stem = files.output_stem(path, paths)
    found = pipeline.analyse(image)
    record = {**_header(pipeline, str(path)), "width": int(image.shape[1]),
              "height": int(image.shape[0]),
              "crop_to_original": found.crop_to_original.round(6).tolist(),
              "persons": person_records(found)}
    row = scenes.scene_row(found.crop, found.in_crop(found.persons),
                           renderer=pipeline.renderer if phosphenes else None,
                           contours=found.in_crop(found.contours))
    picture = viz.figure_to_array(scene_viz.scene_panel([row], title=path.name))
    png = writers.save_png(picture, output_dir / f"{stem}_panel.png")
    summary["outputs"] += [writers.write_json(output_dir / f"{stem}.json", record), png]
    summary["processed"].append(str(path))
  for path in (p for p in paths if reading.is_video(p)):
    try:
      summary["outputs"] += predict_scene_video(pipeline, path, output_dir,
                                                stem=files.output_stem(path, paths),
                                                progress=progress)
      summary["processed"].append(str(path))
      summary["timings"][str(path)] = pipeline.times.summary()
    except reading.UnreadableInputError as e:
      summary["failed"][str(path)] = str(e)
      logging.warning("skipped %s", e)
  return summary


def predict_scene_video(pipeline: scene_stream.ScenePipeline, path: pathlib.Path,
                        output_dir: pathlib.Path, *, stem: str,
                        progress: bool = True) -> list[str]:
  """A video -> `<stem>.json` (every frame's persons) and `<stem>_phosphenes.mp4`.

  Starts from resting tissue; `pipeline.times` collects the time of every
  stage (read, the pipeline's stages, encode, json).

  Raises:
    UnreadableInputError: when the video cannot be decoded or has no frames.
  """
  fps = reading.video_fps(path)
  json_path, video_path = output_dir / f"{stem}.json", output_dir / f"{stem}_phosphenes.mp4"
  pipeline.reset()
  records, crop_to_original = [], None
  bar = tqdm.tqdm(desc=path.name, unit="frame", disable=not progress)
  try:
    with writers.VideoWriter(video_path, fps=fps) as video:
      for live in pipeline.run(reading.iter_video_frames(path)):
        start = time.perf_counter()
        video.append(live.picture)
        pipeline.times.add("encode", time.perf_counter() - start)
        start = time.perf_counter()
        records.append({"frame": live.index, "time": live.index / fps,
                        "persons": person_records(live.found)})
        crop_to_original = live.found.crop_to_original
        pipeline.times.add("json", time.perf_counter() - start)
        bar.update(1)
  finally:
    bar.close()
  if not records:
    raise reading.UnreadableInputError(f"{path}: no frames could be read")
  start = time.perf_counter()
  writers.write_json(json_path, {**_header(pipeline, str(path)), "fps": fps,
                                 "crop_to_original": crop_to_original.round(6).tolist(),
                                 "frames": records})
  pipeline.times.add("json", time.perf_counter() - start)
  return [str(json_path), str(video_path)]
