r"""The readability benchmark: which pose representation can an observer read?

  python -m launch.readability --workdir=/tmp/readability            # 8 x 4 x 3 seeds, 2 protocols
  python -m launch.readability --workdir=/tmp/readability_quick --quick   # 4 x 2 x 3 seeds
  python -m launch.readability --workdir=/tmp/readability \
      --joint_workdir=/tmp/triplet_pose_demo/joint \
      --triplet_workdir=/tmp/triplet_pose_demo/triplet    # + predicted-pose rows

or with this file (every field can be overridden):

  python -m launch.readability --config=configs/readability.py:size=quick \
      --workdir=/tmp/r --config.observer.steps=200 --config.learned.budget=topk

Scenes of several people (their own grid, `readability/scenes.py`):

  python -m launch.readability --scenes --quick --workdir=/tmp/readability_quick
  python -m launch.readability --scenes --workdir=/tmp/r \
      --config=configs/readability.py:size=quick,scenes=True --config.observer.steps=300

Arguments: size=full (default), quick or smoke (seconds: tests); scenes=True.
"""

from triplet_pose import config as config_lib
from triplet_pose.readability import benchmark
from triplet_pose.readability import scenes


def get_config(arg: str | None = None):
  args = config_lib.parse_arg(arg, size="full", scenes=False)
  if args.scenes:
    return scenes.scenes_config(args.size)
  return benchmark.benchmark_config(args.size)
