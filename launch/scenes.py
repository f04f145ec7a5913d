r"""Several people: the multi-person AP report of a trained workdir and scene panels.

  python -m launch.scenes --workdir=/tmp/scenes --output=/tmp/scenes_report \
      [--tune_grouping] [--triplet_workdir=/tmp/demo/triplet] [--joint_workdir=/tmp/demo/joint]
  python -m launch.scenes --workdir=/tmp/scenes --output=/tmp/scenes_report \
      --detection_threshold=0.7 --min_joints=6 --tag_threshold=2
  python -m launch.scenes --workdir=/tmp/scenes --output=/tmp/scenes_report \
      --scales=1,1.25 --map_scale=2 --tune_grouping

Writes OUTPUT/multiperson_report.json (mAP, AP per joint and group, per
occlusion and crowd-index bin, the grouping ceiling, the person count;
with --joint_workdir the single-person baseline on ground-truth boxes; the
grouping used; the `provenance` block: models, steps, data, code) and
OUTPUT/scene_panel.png (image, grouped persons in distinct colours, each
representation's phosphenes; with --triplet_workdir every person's contour
too), and prints the table. The grouping: the settings given by flag, or
those --tune_grouping picks now on training images, or else the workdir's
(what an earlier --tune_grouping or `launch.demo --scenes` kept in
WORKDIR/grouping_tuned.json for its checkpoint and input scales; otherwise
the config's). `launch.predict` groups with the workdir's too.
--tune_grouping keeps what it picks only when run at the config's scales
(those `launch.predict` uses); with other --scales or --map_scale the
kept settings are not used and the config's are, with a warning.
"""

import pathlib

from absl import app
from absl import flags

from launch import common
from triplet_pose import provenance
from triplet_pose import viz
from triplet_pose.prediction import scenes
from triplet_pose.viz import scenes as scene_viz

_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir of configs/scenes.py training.")
_OUTPUT = flags.DEFINE_string("output", None, "Output folder.")
_TRIPLET = flags.DEFINE_string("triplet_workdir", None, "Triplet model: contours per person.")
_JOINT = flags.DEFINE_string("joint_workdir", None,
                             "Single-person joint model: the baseline on ground-truth boxes.")
_SPLIT = flags.DEFINE_string("split", None, "Split (default: the config's evaluation split).")
_NUM_BATCHES = flags.DEFINE_integer("num_batches", 0, "Batches of 16 images (0: all).",
                                    lower_bound=0)
_PANELS = flags.DEFINE_integer("panels", 3, "Scenes in the panel (0: none).", lower_bound=0)
_TUNE = flags.DEFINE_bool("tune_grouping", False,
                          "Pick the detection threshold, fewest joints of a person and tag "
                          "threshold on training images first (the report lists what was "
                          "tried).")
_DETECTION = flags.DEFINE_float("detection_threshold", None,
                                "Heatmap value a joint needs (default: the workdir's).")
_MIN_JOINTS = flags.DEFINE_integer("min_joints", None,
                                   "Fewest joints of a person (default: the workdir's).")
_TAG_THRESHOLD = flags.DEFINE_float(
    "tag_threshold", None,
    "Largest tag distance at which a joint joins a person (default: the workdir's).")
_SCALES = flags.DEFINE_list(
    "scales", None, "Input scales whose maps are combined, e.g. 1,1.25 (default: the "
    "config's grouping.scales; sides must stay multiples of the model's stride).")
_MAP_SCALE = flags.DEFINE_float(
    "map_scale", None, "Side of the combined maps in sides of the plain maps (default: the "
    "config's grouping.map_scale).")
_FLIP_TEST = flags.DEFINE_bool("flip_test", True,
                               "Also run the mirrored image: heatmaps averaged, tags of both "
                               "side by side (this command's tuning, evaluation and panel alike).")
_INTERVALS = flags.DEFINE_integer(
    "intervals", 0, "Bootstrap resamples of the images for 95% intervals of every figure "
    "(0: none; 1000 takes about 2 minutes for 200 images).", lower_bound=0)
flags.mark_flags_as_required(["workdir", "output"])


def _line(name: str, r: dict) -> str:
  bins = {**r["by_occlusion"], **r["by_crowd"]}
  return (f"{name:<22} mAP {r['map']:5.1f} | " + " ".join(f"{k} {v:5.1f}" for k, v in
                                                         bins.items())
          + f" | count {100 * r['count_accuracy']:5.1f}% (too few "
          f"{100 * r['count_too_few']:.1f}%, too many {100 * r['count_too_many']:.1f}%)")


def _span(interval: list[float] | None, factor: float = 1.0) -> str:
  return "n/a" if interval is None else f"[{factor * interval[0]:.1f}, {factor * interval[1]:.1f}]"


def _interval_line(r: dict) -> str:
  bins = {**r["by_occlusion"], **r["by_crowd"]}
  return (f"{round(100 * r['level'])}% intervals over images ({r['resamples']} resamples): "
          f"mAP {_span(r['map'])} | " + " ".join(f"{k} {_span(v)}" for k, v in bins.items())
          + f" | count {_span(r['count_accuracy'], 100.0)}%"
          + (f" | ceiling {_span(r['ceiling_map'])}" if "ceiling_map" in r else ""))


def _floats(name: str, values: list[str] | None) -> tuple[float, ...] | None:
  if values is None:
    return None
  try:
    return tuple(float(v) for v in values)
  except ValueError:
    raise app.UsageError(f"--{name} takes numbers separated by commas, got "
                         f"{','.join(values)!r}") from None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  chosen = {flag.name: flag.value for flag in (_DETECTION, _MIN_JOINTS, _TAG_THRESHOLD)
            if flag.value is not None}
  if chosen and _TUNE.value:
    raise app.UsageError(f"--tune_grouping picks the grouping settings itself: give it or "
                         f"--{', --'.join(chosen)}, not both")
  maps = {"scales": _floats("scales", _SCALES.value), "map_scale": _MAP_SCALE.value}
  maps = {k: v for k, v in maps.items() if v is not None}
  # Tuning starts from the config, so that a damaged tuned file does not stop it.
  options = scenes.grouping_options(_WORKDIR.value, use_tuned=not _TUNE.value, **maps, **chosen)
  out = pathlib.Path(_OUTPUT.value)
  out.mkdir(parents=True, exist_ok=True)
  tried = None
  if _TUNE.value:
    # Kept for the maps launch.predict makes (the config's scales), not for an
    # experiment with other scales.
    config_maps = scenes.grouping_options(_WORKDIR.value, use_tuned=False)
    keep = (options.scales, options.map_scale) == (config_maps.scales, config_maps.map_scale)
    options, tried = scenes.tune_grouping(_WORKDIR.value, base=options,
                                          flip_test=_FLIP_TEST.value, record=keep)
    where = (f"kept in {pathlib.Path(_WORKDIR.value) / scenes.TUNED_FILE}" if keep else
             "not kept: the config's scales are those launch.predict uses")
    print("grouping on training images: " + ", ".join(
        f"{k} {v}" for k, v in scenes.tuned_settings(options).items()) + f" ({where})")
  report = scenes.evaluate_workdir(_WORKDIR.value, split=_SPLIT.value,
                                   num_batches=_NUM_BATCHES.value, joint_workdir=_JOINT.value,
                                   options=options, flip_test=_FLIP_TEST.value,
                                   intervals=_INTERVALS.value)
  if tried:
    report["grouping_tuned_on_train"] = tried
  provenance.write_json(out / "multiperson_report.json", report, indent=1)
  print(f"{report['images']} images, {report['persons']} persons, step {report['step']}")
  print(_line("associative embedding", report))
  if "ceiling_map" in report:
    print(f"{'grouping ceiling':<22} mAP {report['ceiling_map']:5.1f}")
  if "intervals" in report:
    print(_interval_line(report["intervals"]))
  if "baseline" in report:
    print(_line("single person on boxes", report["baseline"]))
  if _PANELS.value:
    rows = scenes.scene_rows(_WORKDIR.value, num_images=_PANELS.value,
                             triplet_workdir=_TRIPLET.value, split=_SPLIT.value,
                             options=options, flip_test=_FLIP_TEST.value)
    path = viz.save_figure(scene_viz.scene_panel(rows), out / "scene_panel.png")
    print(f"wrote {path}")


if __name__ == "__main__":
  common.run(main)
