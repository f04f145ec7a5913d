"""launch.predict with a multi-person model (configs/scenes.py:smoke, trained once):
persons in original pixels, the scene panel, the phosphene video with the
simulator's state carried over, bad flags, and the benchmark on the same pipeline."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from configs import scenes as scenes_config
from conftest import REPO
from triplet_pose import config_files
from triplet_pose import data
from triplet_pose import grouping
from triplet_pose import keypoints as kp
from triplet_pose import phosphenes
from triplet_pose import prediction
from triplet_pose import train
from triplet_pose.prediction import writers

# Low enough that the briefly trained model finds people in every scene.
OPTIONS = grouping.GroupingOptions(detection_threshold=0.1, min_joints=2)


@pytest.fixture(scope="module")
def scenes_workdir(tmp_path_factory):
  """A configs/scenes.py:smoke workdir (4 training steps on the tiny scenes)."""
  root = tmp_path_factory.mktemp("scenes")
  config = scenes_config.get_config("smoke")
  config.input.data_dir = str(root / "tfds")
  train.train_and_evaluate(config, root / "work")
  return root / "work"


@pytest.fixture(scope="module")
def scenes(scenes_workdir):
  """Three validation scenes, (64, 64, 3) uint8."""
  config = config_files.load_config(scenes_workdir)
  it = data.create_iterator(config.input, split=config.input.eval_split, batch_size=1,
                            seed=0, shuffle=False, repeat=False)
  return [np.asarray(next(it)["image"][0]) for _ in range(3)]


@pytest.fixture(scope="module")
def pipeline(scenes_workdir):
  return prediction.ScenePipeline.from_workdirs(str(scenes_workdir), renderer=_renderer(),
                                                options=OPTIONS)


def _renderer():
  """A small, fast renderer: 64 x 64 simulator, 200 phosphenes."""
  params = phosphenes.default_params()
  params["run"]["resolution"] = [64, 64]
  return prediction.PhospheneRenderer(params, num_phosphenes=200)


def _joints(record) -> np.ndarray:
  """(P, 16, 3) of a JSON's persons (NaN for null)."""
  return np.array([[j if j is not None else [np.nan] * 3 for j in p["joints"]]
                   for p in record["persons"]], np.float64).reshape(-1, kp.NUM_JOINTS, 3)


def test_image_persons_json_in_original_pixels(pipeline, scenes, tmp_path):
  folder = tmp_path / "in"
  folder.mkdir()
  scene = scenes[0]
  Image.fromarray(scene).save(folder / "scene.png")
  # Twice the size: the model sees the same input (a 2 x 2 box reduction
  # of nearest-neighbour pixels), so every joint lands at twice its place.
  Image.fromarray(scene).resize((128, 128), Image.NEAREST).save(folder / "scene_2x.png")
  out = tmp_path / "out"
  summary = prediction.predict_scene_paths(pipeline, folder, out, progress=False)
  assert summary["failed"] == {} and len(summary["processed"]) == 2
  assert sorted(p.name for p in out.iterdir()) == [
      "scene.json", "scene_2x.json", "scene_2x_panel.png", "scene_panel.png"]
  small = json.loads((out / "scene.json").read_text())
  big = json.loads((out / "scene_2x.json").read_text())
  assert (big["width"], big["height"]) == (128, 128) and big["crop_size"] == 64
  assert small["joint_names"] == list(kp.JOINT_NAMES) and "contour_names" not in small
  assert grouping.GroupingOptions(**small["grouping"]) == OPTIONS
  assert small["model"] == {"workdir": pipeline.loaded.workdir, "step": pipeline.loaded.step}
  persons = small["persons"]
  assert persons, "the model found nobody: the checks below would pass vacuously"
  for person in persons:
    assert set(person) == {"joints", "score", "depth"}
    assert len(person["joints"]) == kp.NUM_JOINTS
    scores = [j[2] for j in person["joints"] if j is not None]
    assert all(len(j) == 3 for j in person["joints"] if j is not None)
    assert person["score"] == pytest.approx(np.mean(scores), abs=1e-3)
  assert sorted(p["depth"] for p in persons) == list(range(len(persons)))
  assert [p["score"] for p in persons] == sorted((p["score"] for p in persons), reverse=True)
  a, b = _joints(small), _joints(big)
  assert a.shape == b.shape
  # Pixel centres: x in the 2x image is 2 x + 0.5.
  np.testing.assert_allclose(b[..., :2], 2 * a[..., :2] + 0.5, atol=1.0)
  np.testing.assert_allclose(b[..., 2], a[..., 2], atol=1e-3)
  assert [p["depth"] for p in small["persons"]] == [p["depth"] for p in big["persons"]]
  panel = np.asarray(Image.open(out / "scene_panel.png"))
  assert panel.ndim == 3 and panel.shape[1] > panel.shape[0]  # image | phosphenes


def test_box_maps_persons_back_to_the_whole_image(pipeline, scenes):
  scene = scenes[1]
  canvas = np.zeros((100, 150, 3), np.uint8)  # black, as the model's own padding
  canvas[20:84, 40:104] = scene
  alone = pipeline.analyse(scene)
  pipeline.box = (40, 20, 103, 83)
  try:
    boxed = pipeline.analyse(canvas)
  finally:
    pipeline.box = None
  np.testing.assert_array_equal(boxed.crop, alone.crop)
  assert len(alone.persons)
  np.testing.assert_allclose(boxed.persons[..., :2], alone.persons[..., :2] + [40, 20],
                             atol=1e-6)


def test_phosphenes_build_up_with_the_state_carried_over(pipeline, scenes):
  pipeline.reset()
  lives = [pipeline.process(scenes[2]) for _ in range(3)]
  assert [live.index for live in lives] == [0, 1, 2]
  brightness = [int(live.phosphenes["joints"].astype(int).sum()) for live in lives]
  assert 0 < brightness[0] < brightness[1] < brightness[2]  # temporal dynamics
  assert lives[0].picture.shape == (64, 2 * 64, 3)  # input | the scene's phosphenes
  assert set(lives[0].seconds) == {"crop", "model", "decode", "group", "phosphenes",
                                   "picture"}
  pipeline.reset()
  again = pipeline.process(scenes[2])
  assert again.index == 0
  np.testing.assert_array_equal(again.phosphenes["joints"], lives[0].phosphenes["joints"])


def test_launch_predict_video_and_image_with_contours(scenes_workdir, scenes, workdirs,
                                                      tmp_path):
  folder = tmp_path / "in"
  folder.mkdir()
  with writers.VideoWriter(folder / "clip.mp4", fps=5) as video:
    for scene in scenes:
      video.append(scene)
  Image.fromarray(scenes[0]).resize((96, 96)).save(folder / "photo.jpg")
  (folder / "broken.png").write_bytes(b"\x89PNG not really")
  out = tmp_path / "out"
  result = subprocess.run(
      [sys.executable, "-m", "launch.predict", f"--joint_workdir={scenes_workdir}",
       f"--triplet_workdir={workdirs['triplet']}", f"--input={folder}", f"--output={out}",
       "--num_phosphenes=100"],
      cwd=REPO, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "processed 2 input(s)" in result.stdout and "frames/s" in result.stdout
  assert "broken.png" in result.stderr
  assert sorted(p.name for p in out.iterdir()) == [
      "clip.json", "clip_phosphenes.mp4", "photo.json", "photo_panel.png"]
  imageio = pytest.importorskip("imageio.v2")
  frames = imageio.mimread(out / "clip_phosphenes.mp4")
  # Three frames: the input with the persons | skeleton scene | contour scene.
  assert len(frames) == 3 and frames[0].shape[1] == 3 * frames[0].shape[0]
  record = json.loads((out / "clip.json").read_text())
  assert [f["frame"] for f in record["frames"]] == [0, 1, 2]
  assert record["frames"][2]["time"] == pytest.approx(2 / record["fps"])
  assert record["contour_names"] == list(kp.CONTOUR_NAMES)
  photo = json.loads((out / "photo.json").read_text())
  assert (photo["width"], photo["height"]) == (96, 96)
  for person in photo["persons"] + [p for f in record["frames"] for p in f["persons"]]:
    assert len(person["contour"]) == kp.NUM_CONTOUR
    assert all(c is not None and len(c) == 3 for c in person["contour"])


def test_launch_predict_refuses_flags_a_multi_person_model_cannot_use(scenes_workdir,
                                                                      tmp_path):
  image = tmp_path / "a.png"
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
  result = subprocess.run(
      [sys.executable, "-m", "launch.predict", f"--joint_workdir={scenes_workdir}",
       f"--input={image}", f"--output={tmp_path / 'out'}", "--video_panels"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 2 and "Traceback" not in result.stderr
  line, = [l for l in result.stderr.splitlines() if l.startswith("launch.predict: error: ")]
  assert "--video_panels" in line and "multi-person" in line


def test_benchmark_times_the_pipeline_and_its_peer(scenes_workdir, workdirs, capsys):
  sys.path.insert(0, str(REPO / "benchmarks"))
  try:
    import scenes_video  # pylint: disable=g-import-not-at-top
  finally:
    sys.path.remove(str(REPO / "benchmarks"))
  scenes_video.main([f"--workdir={scenes_workdir}", "--frames=2", "--num_phosphenes=100",
                     f"--joint_workdir={workdirs['joint']}", "--scales=1,1.5",
                     "--map_scale=2"])
  printed = capsys.readouterr().out
  assert "input scales 1, 1.5, maps at 2x" in printed  # the multi-scale pipeline ran
  for stage in ("crop", "model", "decode", "group", "phosphenes", "picture", "total"):
    assert f"  {stage} " in printed
  several = float(printed.split(" frames/s | load")[0].rsplit("\n", 1)[-1])
  peer = printed.split("peer, one person's pose")[1]
  single = float(peer.split(" frames/s;")[0].rsplit(", ", 1)[-1])
  ratio = float(peer.split("several people / one person: ")[1].split("x")[0])
  assert ratio == pytest.approx(several / single, rel=0.03, abs=0.01)
