"""Image loading, cropping, prediction files, live video, and launch.predict on a messy folder."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from triplet_pose import keypoints as kp
from triplet_pose import phosphenes
from triplet_pose import prediction
from triplet_pose.prediction import stream as stream_lib
from triplet_pose.prediction import writers


def _renderer(**kwargs):
  """A small, fast renderer: 64 x 64 simulator."""
  params = phosphenes.default_params()
  params["run"]["resolution"] = [64, 64]
  return prediction.PhospheneRenderer(params, **kwargs)


def test_load_image_modes(tmp_path):
  gray = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (8, 1))
  Image.fromarray(gray, "L").save(tmp_path / "gray.png")
  np.testing.assert_array_equal(prediction.load_image(tmp_path / "gray.png"),
                                np.repeat(gray[..., None], 3, -1))
  deep = (gray.astype(np.uint16) * 257)
  Image.fromarray(deep).save(tmp_path / "deep.png")
  loaded = prediction.load_image(tmp_path / "deep.png")
  assert loaded.shape == (8, 25, 3) and abs(int(loaded[0, -1, 0]) - 240) <= 1
  rgba = np.zeros((6, 6, 4), np.uint8)
  rgba[..., 0] = 200
  rgba[:3, :, 3] = 255  # top half opaque red, bottom transparent
  Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
  loaded = prediction.load_image(tmp_path / "rgba.png")
  np.testing.assert_array_equal(loaded[0, 0], [200, 0, 0])
  np.testing.assert_array_equal(loaded[-1, -1], [255, 255, 255])


def test_load_image_applies_exif_rotation(tmp_path):
  image = np.zeros((20, 40, 3), np.uint8)  # landscape, a white mark top left
  image[:5, :5] = 255
  exif = Image.Exif()
  exif[0x0112] = 6  # stored rotated: display turned 90 degrees clockwise
  Image.fromarray(image).save(tmp_path / "rot.jpg", exif=exif, quality=95)
  loaded = prediction.load_image(tmp_path / "rot.jpg")
  assert loaded.shape == (40, 20, 3)  # portrait, as a viewer shows it
  assert loaded[:5, -5:].mean() > 200 and loaded[:5, :5].mean() < 50


def test_corrupt_file_raises_naming_it(tmp_path):
  (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
  with pytest.raises(prediction.UnreadableInputError, match="bad.jpg"):
    prediction.load_image(tmp_path / "bad.jpg")


def test_crop_maps_back_to_original_pixels():
  image = np.zeros((100, 300, 3), np.uint8)
  image[40, 250] = 255
  crop, to_original = prediction.crop(image, 64, box=(200, 20, 279, 99))
  y, x = np.unravel_index(crop[..., 0].argmax(), crop.shape[:2])
  back = to_original[:, :2] @ np.array([x, y]) + to_original[:, 2]
  np.testing.assert_allclose(back, [250, 40], atol=1.5)  # one crop pixel = 1.25 px
  whole, to_original = prediction.crop(image, 64)
  np.testing.assert_allclose(to_original[:, :2] @ [31.5, 31.5] + to_original[:, 2],
                             [149.5, 49.5])


def test_parse_box():
  assert prediction.parse_box("1,2,30,40") == (1.0, 2.0, 30.0, 40.0)
  assert prediction.parse_box(None) is None
  with pytest.raises(ValueError, match="--box"):
    prediction.parse_box("5,5,1,1")


def test_predictor_keypoints_in_original_pixels(workdirs):
  predictor = prediction.Predictor(str(workdirs["joint"]), str(workdirs["triplet"]),
                                   batch_size=2)
  rng = np.random.default_rng(0)
  images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            for h, w in ((50, 90), (120, 40), (64, 64))]
  preds = predictor.predict(images, [None, (5, 10, 30, 100), None])
  assert len(preds) == 3  # two batches, the second padded
  for pred, image in zip(preds, images):
    assert pred.keypoints["joints"].shape == (16, 2)
    assert pred.keypoints["contour"].shape == (26, 2)
    record = prediction.prediction_record(pred, source="x", image_shape=image.shape)
    assert list(record["joints"]) == list(kp.JOINT_NAMES)
    assert list(record["contour"]) == list(kp.CONTOUR_NAMES)
    xy = np.array([[v["x"], v["y"]] for v in record["joints"].values()])
    a = pred.crop_to_original
    np.testing.assert_allclose(xy, pred.keypoints["joints"] @ a[:, :2].T + a[:, 2], atol=0.01)
  # The boxed image: crop pixels scale by (box side 91 px) / 64.
  np.testing.assert_allclose(preds[1].crop_to_original[0, 0], 91 / 64)


def _write_clip(path, frames, fps=10):
  imageio = pytest.importorskip("imageio.v2")
  pytest.importorskip("imageio_ffmpeg")
  with imageio.get_writer(path, fps=fps, macro_block_size=1) as w:
    for f in frames:
      w.append_data(f)
  return imageio


def test_video_gives_mp4s_and_every_frames_keypoints(workdirs, tmp_path):
  frames = [np.full((48, 64, 3), 20 * i, np.uint8) for i in range(5)]
  imageio = _write_clip(tmp_path / "clip.mp4", frames)
  predictor = prediction.Predictor(str(workdirs["joint"]), str(workdirs["triplet"]),
                                   batch_size=2)
  out = tmp_path / "out"
  summary = prediction.predict_paths(predictor, tmp_path / "clip.mp4", out,
                                     renderer=_renderer(num_phosphenes=100),
                                     progress=False, video_panels=True)
  assert summary["failed"] == {}
  assert "frames/s" in summary["timings"][str(tmp_path / "clip.mp4")]
  record = json.loads((out / "clip.json").read_text())
  assert len(record["frames"]) == 5 and record["fps"] == pytest.approx(10)
  assert record["frames"][4]["time"] == pytest.approx(0.4)
  for frame in record["frames"]:
    assert list(frame["joints"]) == list(kp.JOINT_NAMES)
    assert list(frame["contour"]) == list(kp.CONTOUR_NAMES)
  video = imageio.mimread(out / "clip_phosphenes.mp4")
  assert len(video) == 5 and video[0].shape[:2] == (64, 3 * 64)  # input | joints | triplet
  panels = imageio.mimread(out / "clip_panel.mp4")
  assert len(panels) == 5 and panels[0].shape[0] > 100
  # Written under hidden names, renamed when complete: nothing else is left.
  assert sorted(p.name for p in out.iterdir()) == [
      "clip.json", "clip_panel.mp4", "clip_phosphenes.mp4"]


def test_video_writer_keeps_the_frames_before_an_error(tmp_path):
  imageio = pytest.importorskip("imageio.v2")
  pytest.importorskip("imageio_ffmpeg")
  path = tmp_path / "out.mp4"
  with pytest.raises(KeyboardInterrupt):
    with writers.VideoWriter(path, fps=5) as video:
      for i in range(3):
        video.append(np.full((32, 48, 3), 60 * i, np.uint8))
        assert not path.exists()  # the final name appears only when complete
      raise KeyboardInterrupt
  assert len(imageio.mimread(path)) == 3
  assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_phosphenes_build_up_over_frames():
  renderer = _renderer(num_phosphenes=300, frames_per_image=1)
  joints = np.random.default_rng(0).uniform(10, 54, size=(16, 2))
  states = renderer.init_state(("joints",))
  brightness = []
  for _ in range(4):
    states, out = renderer.step(states, {"joints": joints}, image_size=(64, 64))
    image, mask = out["joints"]
    brightness.append(float(np.asarray(image).sum()))
  assert brightness[0] > 0 and brightness[3] > brightness[0]  # temporal dynamics
  assert np.asarray(mask).max() == pytest.approx(1.0)  # the drawn skeleton


@pytest.mark.parametrize("shape, box, fill", [((100, 300), (200, 20, 279, 99), (0, 0, 0)),
                                               ((200, 90), None, (255, 255, 255)),
                                               ((48, 64), None, (0, 0, 0))])
def test_stream_crop_matches_the_still_crop(shape, box, fill):
  rng = np.random.default_rng(0)
  # A smooth image: the two bilinear warps then agree to a grey level or two.
  small = rng.integers(0, 255, (shape[0] // 8 + 2, shape[1] // 8 + 2, 3)).astype(np.uint8)
  image = np.asarray(prediction.reading.Image.fromarray(small).resize(
      (shape[1], shape[0]), prediction.reading.Image.BILINEAR))
  still, _ = prediction.crop(image, 32, box=box, fill=fill)
  geometry = stream_lib.crop_geometry(shape, 32, box)
  live = stream_lib.crop_frames(image[None], geometry.reduced_affine, size=32,
                                factor=geometry.factor, fill=tuple(map(float, fill)))[0]
  diff = np.abs(np.asarray(live, np.int32) - still.astype(np.int32)).max(axis=-1)
  # Equal to a grey level or two, except along the image's edges (at most
  # three lines of 32): PIL fills a pixel whose centre maps outside where the
  # jax warp blends it, and PIL's box reduction keeps a partial last block.
  assert np.median(diff) <= 1 and (diff > 3).mean() <= 3 / 32


def test_stream_carries_state_across_chunks_and_padding(workdirs):
  predictor = prediction.Predictor(str(workdirs["joint"]), str(workdirs["triplet"]),
                                   batch_size=4, flip_test=False)
  renderer = _renderer(num_phosphenes=200)
  rng = np.random.default_rng(1)
  frames = [rng.integers(0, 255, (40, 56, 3), dtype=np.uint8) for _ in range(6)]
  stream = prediction.PhospheneStream(predictor, renderer, batch_size=4)
  # A short chunk (2 frames padded to 4), then a full one: what a camera loop
  # whose frames come unevenly does.
  chunked = stream.process(frames[:2]) + stream.process(frames[2:])
  single = list(prediction.PhospheneStream(predictor, renderer, batch_size=1).run(frames))
  assert [f.index for f in chunked] == list(range(6))
  # They give what 6 single frames give: the padding leaves the state alone
  # and the state runs on from chunk to chunk.
  for a, b in zip(chunked, single):
    for name in ("joints", "contour"):
      np.testing.assert_allclose(a.keypoints[name], b.keypoints[name], atol=1e-3)
      np.testing.assert_allclose(a.phosphenes[name], b.phosphenes[name], atol=1)
  brightness = [int(f.phosphenes["contour"].astype(int).sum()) for f in single]
  assert brightness[-1] > 0
  assert single[0].picture.shape == (64, 3 * 64, 3)
  # The generator pulls chunks of 4 and pads the last one.
  stream.reset()
  assert [f.index for f in stream.run(frames)] == list(range(6))


def test_launch_predict_on_messy_folder(workdirs, tmp_path):
  folder = tmp_path / "in"
  folder.mkdir()
  (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
  Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 50), dtype=np.uint8),
                  "L").save(folder / "gray.png")
  rgba = np.random.default_rng(1).integers(0, 255, (40, 30, 4), dtype=np.uint8)
  Image.fromarray(rgba, "RGBA").save(folder / "rgba.png")
  out = tmp_path / "out"
  result = subprocess.run(
      [sys.executable, "-m", "launch.predict", f"--joint_workdir={workdirs['joint']}",
       f"--triplet_workdir={workdirs['triplet']}", f"--input={folder}",
       f"--output={out}", "--num_phosphenes=200"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "broken.jpg" in result.stderr and "processed 2 input(s)" in result.stdout
  assert sorted(p.name for p in out.iterdir()) == [
      "gray.json", "gray_panel.png", "rgba.json", "rgba_panel.png"]
  record = json.loads((out / "gray.json").read_text())
  assert (record["width"], record["height"]) == (50, 30)
  assert set(record["joints"]["r_ankle"]) == {"x", "y", "confidence"}
  assert len(record["contour"]) == kp.NUM_CONTOUR
  panel = np.asarray(Image.open(out / "rgba_panel.png"))
  assert panel.shape[0] > 300 and panel.shape[1] > 600


def test_combined_workdir_predicts_joints_and_contour(combined_workdir, tmp_path):
  predictor = prediction.Predictor(str(combined_workdir), batch_size=2)
  assert predictor.models.combined is not None and predictor.models.joint is None
  folder = tmp_path / "in"
  folder.mkdir()
  for i, (h, w) in enumerate(((40, 70), (90, 50), (64, 64))):
    Image.fromarray(np.random.default_rng(i).integers(0, 255, (h, w, 3), dtype=np.uint8)
                    ).save(folder / f"im{i}.png")
  out = tmp_path / "out"
  summary = prediction.predict_paths(predictor, folder, out, progress=False)
  assert summary["failed"] == {} and len(summary["processed"]) == 3
  record = json.loads((out / "im1.json").read_text())
  assert (record["width"], record["height"]) == (50, 90)
  assert list(record["joints"]) == list(kp.JOINT_NAMES)
  assert list(record["contour"]) == list(kp.CONTOUR_NAMES)
  xy = np.array([[v["x"], v["y"]] for v in record["contour"].values()])
  # In original pixels of the 50 x 90 image (the crop is 64 x 64 around it).
  assert xy[:, 0].min() > -25 and xy[:, 0].max() < 75 and xy[:, 1].max() < 90
  assert all(np.isfinite(v["confidence"]) for v in record["contour"].values())
  assert (out / "im1_panel.png").read_bytes()[:4] == b"\x89PNG"
  with pytest.raises(ValueError, match="drop the triplet workdir"):
    prediction.Predictor(str(combined_workdir), str(combined_workdir))
