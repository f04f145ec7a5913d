r"""The phosphene version of an image or a video (dynaphos' model, in JAX).

  python -m launch.phosphenes --input=photo.jpg --output=/tmp/photo_phosphenes.png
  python -m launch.phosphenes --params=params.yaml --input=clip.mp4 \
      --output=/tmp/clip_phosphenes.mp4 --mask=intensity --layout=cortex

`--params` takes a dynaphos-style params.yaml (default: dynaphos' defaults).
The frame is resized to `run.resolution`, turned into an activation mask
(its edges or its intensity), sampled per phosphene and simulated; for video
the tissue state carries over between frames (a progress bar shows the
frames), a still image is stimulated for `--frames_per_image` frames.
"""

from absl import app
from absl import flags

from launch import common
from triplet_pose.phosphenes import media

_PARAMS = flags.DEFINE_string("params", None, "params.yaml (dynaphos schema); default built-in.")
_INPUT = flags.DEFINE_string("input", None, "Image or video to render.")
_OUTPUT = flags.DEFINE_string("output", None, "Output image (.png, ...) or video (.mp4, .gif).")
_MASK = flags.DEFINE_enum("mask", "edges", ["edges", "intensity"],
                          "Activation mask: Sobel edges or intensity.")
_INVERT = flags.DEFINE_bool("invert", False, "Stimulate dark regions (1 - intensity).")
_EDGE_GAIN = flags.DEFINE_float("edge_gain", 3.0, "Edge strength multiplier.")
_LAYOUT = flags.DEFINE_enum("layout", "magnification", ["magnification", "cortex", "coordinates"],
                            "Phosphene layout.")
_NUM_PHOSPHENES = flags.DEFINE_integer("num_phosphenes", 1000,
                                       "Phosphenes for --layout=magnification.")
_CORTEX_GRID = flags.DEFINE_integer("cortex_grid", 32,
                                    "Electrodes per side and hemisphere for --layout=cortex.")
_COORDINATES = flags.DEFINE_string("coordinates", None,
                                   "YAML with x, y lists (degrees) for --layout=coordinates.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the layout and thresholds.")
_FRAMES_PER_IMAGE = flags.DEFINE_integer("frames_per_image", 10,
                                         "Frames of stimulation for a still image.")
_MAX_FRAMES = flags.DEFINE_integer("max_frames", None, "Stop a video after this many frames.")
flags.mark_flags_as_required(["input", "output"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  media.check_paths(_INPUT.value, _OUTPUT.value)  # Fail fast, before the build.
  sim = media.build_simulator(_PARAMS.value, layout=_LAYOUT.value,
                              num_phosphenes=_NUM_PHOSPHENES.value,
                              cortex_grid=_CORTEX_GRID.value,
                              coordinates=_COORDINATES.value, seed=_SEED.value)
  summary = media.render_file(
      sim, _INPUT.value, _OUTPUT.value, frames_per_image=_FRAMES_PER_IMAGE.value,
      max_frames=_MAX_FRAMES.value, kind=_MASK.value, invert=_INVERT.value,
      edge_gain=_EDGE_GAIN.value)
  print(f"{sim.num_phosphenes} phosphenes, {summary['frames']} frame(s) "
        f"{summary['resolution'][1]}x{summary['resolution'][0]} -> {summary['output']}")


if __name__ == "__main__":
  common.run(main, uses_tensorflow=False)
