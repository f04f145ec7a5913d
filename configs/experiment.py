r"""The human readability experiment: stimuli, design, exclusions, analysis.

  python -m launch.experiment build --workdir=/tmp/experiment
  python -m launch.experiment build --workdir=/tmp/experiment_quick --quick
  python -m launch.experiment build --config=configs/experiment.py:size=quick \
      --workdir=/tmp/e --config.choice_figures=24

Argument: size=full (default: 4 representations x 4 phosphene counts, 48
choice and 16 click trials per participant) or quick (2 x 2, a dozen trials
per block, built in under a minute). The config is saved in the manifest:
`serve`, `analyze` and `simulate` read it from there, so the exclusion rule
is fixed before any data come in.
"""

from triplet_pose import config as config_lib
from triplet_pose.experiment import design


def get_config(arg: str | None = None):
  args = config_lib.parse_arg(arg, size="full")
  return design.experiment_config(args.size)
