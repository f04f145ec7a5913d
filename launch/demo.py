r"""The main job: image -> pose -> phosphenes, end to end on synthetic figures.

  python -m launch.demo --workdir=/tmp/triplet_pose_demo [--quick]

Builds the synthetic dataset, trains a small joint model and a small triplet
model (fed with the joint model's predictions), evaluates both, renders
phosphenes and writes WORKDIR/report.html. Re-running resumes.
"""

import json

from absl import app
from absl import flags

from configs import demo as demo_configs
from launch import common
from triplet_pose import demo

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for data, checkpoints and the report.")
_QUICK = flags.DEFINE_bool("quick", False, "A short run (a few minutes on a CPU).")
_SMOKE = flags.DEFINE_bool("smoke", False, "Seconds of training: checks the pipeline only.")
_PANELS = flags.DEFINE_integer("panels", 4, "Validation examples shown in the report.")
flags.mark_flag_as_required("workdir")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  size = "smoke" if _SMOKE.value else "quick" if _QUICK.value else "full"
  variant = "" if size == "full" else f",{size}"
  summary = demo.run_demo(_WORKDIR.value, demo_configs.get_config("joint" + variant),
                          demo_configs.get_config("triplet" + variant), size=size,
                          num_panels=_PANELS.value)
  print(json.dumps(summary, indent=2))


if __name__ == "__main__":
  common.run(main)
