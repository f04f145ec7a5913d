"""Flags that make an entry point one process of a multi-process (multi-host) job.

Each process of the job runs the same command with its own --process_id:

  python -m launch.train --config=configs/tiny.py --workdir=/shared/run \
      --coordinator_address=10.0.0.1:12345 --num_processes=2 --process_id=0

The values may come from the environment instead (JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES, JAX_PROCESS_ID); with none of them, --distributed lets
`jax.distributed.initialize()` read them from the cluster (SLURM, Open MPI,
Kubernetes, TPU).
"""

from __future__ import annotations

import os

from absl import flags

from triplet_pose import parallel

_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 of a multi-process job "
    "(default: $JAX_COORDINATOR_ADDRESS).")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Processes in the job (default: $JAX_NUM_PROCESSES, else 1 "
    "or the cluster's).")
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "This process, 0..num_processes-1 (default: $JAX_PROCESS_ID).")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Join a multi-process job whose layout "
    "jax.distributed.initialize() detects (SLURM, Open MPI, Kubernetes, TPU).")
_HEARTBEAT = flags.DEFINE_integer(
    "heartbeat_timeout", parallel.HEARTBEAT_TIMEOUT_S, "Seconds after which a silent "
    "process counts as dead and the others stop.")


def _env_int(name: str) -> int | None:
  value = os.environ.get(name)
  return int(value) if value else None


def initialize(*, auto_detect: bool = False) -> bool:
  """Joins the job the flags (or environment) describe; call before any JAX call.

  Args:
    auto_detect: also join when no flag asks for it (`config.distributed`).

  Returns:
    True when this process is part of a multi-process job.
  """
  coordinator = _COORDINATOR.value or os.environ.get("JAX_COORDINATOR_ADDRESS")
  num = _NUM_PROCESSES.value or _env_int("JAX_NUM_PROCESSES")
  pid = _PROCESS_ID.value if _PROCESS_ID.value is not None else _env_int("JAX_PROCESS_ID")
  return parallel.initialize_distributed(
      coordinator_address=coordinator, num_processes=num, process_id=pid,
      auto_detect=_DISTRIBUTED.value or auto_detect, heartbeat_timeout_s=_HEARTBEAT.value)
