"""launch.phosphenes and the media helpers, end to end on generated files."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

from triplet_pose import phosphenes
from triplet_pose.phosphenes import media

REPO = pathlib.Path(__file__).resolve().parents[1]
# ffmpeg and the CLI run as subprocesses of this (multithreaded) JAX process.
pytestmark = pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")


def _square_image(path, shift=0):
  image = np.zeros((96, 128, 3), np.uint8)
  image[24:72, 40 + shift:88 + shift] = 255
  Image.fromarray(image).save(path)
  return image


def _small_params(tmp_path):
  params = phosphenes.default_params()
  params["run"]["resolution"] = [64, 64]
  path = tmp_path / "params.yaml"
  path.write_text(yaml.safe_dump(params))
  return path


def _run(*args):
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "launch.phosphenes", *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=300)


def test_cli_renders_an_image_and_reports_bad_input(tmp_path):
  _square_image(tmp_path / "square.png")
  out = tmp_path / "out" / "square_phosphenes.png"
  result = _run(f"--params={_small_params(tmp_path)}", f"--input={tmp_path / 'square.png'}",
                f"--output={out}", "--num_phosphenes=600", "--mask=intensity")
  assert result.returncode == 0, result.stderr
  rendered = np.asarray(Image.open(out))
  assert rendered.shape == (64, 64) and rendered.dtype == np.uint8
  # Phosphenes inside the (resized) square, darkness well outside it.
  assert rendered[18:46, 22:42].max() > 100
  assert rendered[:8].max() == 0 and rendered[56:].max() == 0
  result = _run(f"--input={tmp_path / 'missing.png'}", f"--output={out}")
  assert result.returncode != 0 and "input not found" in result.stderr


def test_render_file_video_and_errors(tmp_path):
  import imageio.v2 as imageio  # pylint: disable=g-import-not-at-top
  frames = [_square_image(tmp_path / f"f{i}.png", shift=4 * i) for i in range(4)]
  imageio.mimsave(tmp_path / "clip.gif", frames, duration=100, loop=0)
  sim = media.build_simulator(phosphenes.load_params(_small_params(tmp_path)),
                              num_phosphenes=400)
  summary = media.render_file(sim, tmp_path / "clip.gif", tmp_path / "clip_ph.gif",
                              progress=False)
  assert summary["frames"] == 4
  video = np.asarray(imageio.mimread(tmp_path / "clip_ph.gif"))
  assert video.shape[:3] == (4, 64, 64) and video.max() > 50

  (tmp_path / "corrupt.png").write_bytes(b"not an image")
  with pytest.raises(ValueError, match="not a readable image"):
    media.render_file(sim, tmp_path / "corrupt.png", tmp_path / "x.png")
  (tmp_path / "corrupt.mp4").write_bytes(b"not a video")
  with pytest.raises(ValueError, match="corrupt.mp4"):
    media.render_file(sim, tmp_path / "corrupt.mp4", tmp_path / "x.mp4")
  with pytest.raises(ValueError, match="output of a video"):
    media.render_file(sim, tmp_path / "clip.gif", tmp_path / "x.png")
  with pytest.raises(FileNotFoundError, match="input not found"):
    media.render_file(sim, tmp_path / "nope.png", tmp_path / "x.png")


def test_frame_to_mask_edges_and_intensity():
  frame = np.zeros((40, 40), np.uint8)
  frame[10:30, 10:30] = 255
  intensity = media.frame_to_mask(frame, size=(40, 40), kind="intensity")
  np.testing.assert_allclose(intensity[15, 15], 1.0)
  edges = media.frame_to_mask(frame, size=(40, 40), kind="edges")
  assert edges[20, 10] == 1.0 and edges[20, 20] == 0.0 and edges[2, 2] == 0.0
  with pytest.raises(ValueError, match="mask kind"):
    media.frame_to_mask(frame, size=(40, 40), kind="blur")
