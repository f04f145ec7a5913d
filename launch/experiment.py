r"""The human readability experiment: build | serve | export | analyze | simulate.

  python -m launch.experiment build --workdir=/tmp/experiment [--quick]
  python -m launch.experiment serve --workdir=/tmp/experiment --port=8000
  python -m launch.experiment simulate --workdir=/tmp/experiment \
      --url=http://127.0.0.1:8000 --participants=50
  python -m launch.experiment export --workdir=/tmp/experiment
  python -m launch.experiment analyze --workdir=/tmp/experiment

`build` makes the stimulus set and manifest (triplet_pose/experiment/
stimuli.py; deterministic, resumable). `serve` runs the web application
(uvicorn + starlette) that hands out trials and stores responses in
WORKDIR/responses.sqlite, or in `--database_url` (PostgreSQL). `export`
writes one row per trial as CSV and JSON; `analyze` writes the tables and
figures; `simulate` sends virtual participants through the HTTP API.
See docs/experiment.md.
"""

from __future__ import annotations

import pathlib

from absl import app
from absl import flags
from ml_collections import config_flags

from configs import experiment as experiment_configs
from launch import common
from triplet_pose.experiment import server
from triplet_pose.experiment import store

COMMANDS = ("build", "serve", "export", "analyze", "simulate")

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "configs/experiment.py[:size=quick] (build only; the others read "
    "the config saved in the manifest).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "The experiment's folder.")
_QUICK = flags.DEFINE_bool("quick", False, "build: 2 representations x 2 N, a dozen "
                           "trials per block (under a minute).")
_HOST = flags.DEFINE_string("host", "127.0.0.1", "serve: address to listen on "
                            "(0.0.0.0 to accept other machines).")
_PORT = flags.DEFINE_integer("port", 8000, "serve: port.")
_DATABASE_URL = flags.DEFINE_string(
    "database_url", None, "SQLAlchemy URL of the store (default "
    "sqlite:///WORKDIR/responses.sqlite), e.g. postgresql+psycopg://user@host/db.")
_WORKERS = flags.DEFINE_integer("workers", 1, "serve: uvicorn worker processes "
                                "(several need PostgreSQL).")
_OUT = flags.DEFINE_string("out", None, "export/analyze: output folder "
                           "(default WORKDIR/export, WORKDIR/analysis).")
_URL = flags.DEFINE_string("url", "http://127.0.0.1:8000", "simulate: the server.")
_PARTICIPANTS = flags.DEFINE_integer("participants", 50, "simulate: how many.")
_ANSWERS = flags.DEFINE_enum("answers", "programmed", ["programmed", "observer"],
                             "simulate: programmed accuracy per condition "
                             "(config.simulate) or the computational observer's answers.")
_CONCURRENCY = flags.DEFINE_integer("concurrency", 50, "simulate: participants at once.")
_SEED = flags.DEFINE_integer("seed", None, "simulate: seed (default config.simulate.seed).")
_THINK = flags.DEFINE_float("think", 0.0, "simulate: fraction of each programmed reaction "
                            "time waited before posting (1: a person's pace, 0: back to back).")
_BOOTSTRAP = flags.DEFINE_integer("bootstrap", None, "analyze: bootstrap resamples "
                                  "(default config.analysis.bootstrap).")
flags.mark_flag_as_required("workdir")


def _database_url(workdir: pathlib.Path) -> str:
  return _DATABASE_URL.value or store.sqlite_url(workdir)


def main(argv):
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise app.UsageError(f"give one command, one of {', '.join(COMMANDS)}; got {argv[1:]}")
  command, workdir = argv[1], pathlib.Path(_WORKDIR.value)
  if command != "build" and (_CONFIG.value is not None or _QUICK.value):
    raise app.UsageError("--config and --quick belong to build; the other commands read "
                         "the config saved in the manifest")
  if command == "build":
    if _CONFIG.value is not None and _QUICK.value:
      raise app.UsageError("give --config=configs/experiment.py:size=quick or --quick, "
                           "not both")
    # Deferred: the simulator and readability code, build only (serve: +0.6 s measured).
    from triplet_pose.experiment import stimuli  # pylint: disable=g-import-not-at-top
    config = _CONFIG.value or experiment_configs.get_config(
        "size=quick" if _QUICK.value else None)
    stimuli.build(config, workdir)
  elif command == "serve":
    server.serve(workdir, host=_HOST.value, port=_PORT.value,
                 database_url=_database_url(workdir), workers=_WORKERS.value)
  elif command == "export":
    paths = store.export_files(workdir, _database_url(workdir),
                               out=pathlib.Path(_OUT.value or workdir / "export"))
    print("\n".join(str(p) for p in paths))
  elif command == "analyze":
    # Deferred: scipy's statistics, analyze only (serve: +0.6 s measured).
    from triplet_pose.experiment import analysis  # pylint: disable=g-import-not-at-top
    report = analysis.analyze(workdir, _database_url(workdir),
                              out=pathlib.Path(_OUT.value or workdir / "analysis"),
                              bootstrap=_BOOTSTRAP.value)
    print(report["text"])
  else:
    # Deferred: httpx and scipy, simulate only (serve: +0.7 s measured).
    from triplet_pose.experiment import participants  # pylint: disable=g-import-not-at-top
    summary = participants.simulate(workdir, url=_URL.value, count=_PARTICIPANTS.value,
                                    answers=_ANSWERS.value, concurrency=_CONCURRENCY.value,
                                    seed=_SEED.value, think=_THINK.value)
    print(participants.format_summary(summary))


if __name__ == "__main__":
  common.run(main, uses_tensorflow=False)
