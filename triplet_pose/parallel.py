"""Data parallelism with `jax.sharding` over one or several processes.

Parameters and optimizer state are replicated; every batch is split along its
first axis over all devices of all processes. `jit` then computes global
means (the loss, and batch-norm statistics) exactly as on one device, so no
`pmap` or `axis_name` is needed.

Several processes (hosts) form one job after `initialize_distributed`: each
process feeds its own rows of every global batch
(`jax.make_array_from_process_local_data`), host-side state that differs per
process (the input position) is gathered with `gather_json` so that process 0
can checkpoint it. When a process dies, the next collective fails on the
others; `raise_if_process_lost` names the dead ones.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import numpy as np
from absl import logging
from jax._src import distributed as jax_distributed  # its client: no public accessor
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"
# A dead process stops heartbeats; after this many seconds the JAX
# distributed service ends the others (JAX's default, 100 s, is long).
HEARTBEAT_TIMEOUT_S = 30
# How long survivors of a failed collective wait for each other before
# calling the absent ones lost: short enough to print the message before the
# heartbeat timeout ends the process.
_LOST_CHECK_S = 8.0
_LOST_CHECK_KEY = "triplet_pose/failed_collective"


class ProcessLostError(ConnectionError):
  """A process of a multi-process job stopped; the job cannot continue."""


def initialize_distributed(*, coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None, auto_detect: bool = False,
                           heartbeat_timeout_s: int = HEARTBEAT_TIMEOUT_S) -> bool:
  """Joins a multi-process job; call before any other JAX call.

  Nothing happens (single process) unless a coordinator address or more than
  one process is given, or `auto_detect` asks `jax.distributed.initialize()`
  to read the cluster (SLURM, Open MPI, Kubernetes, TPU) from the
  environment. CPU collectives go over gloo (the default CPU client has no
  cross-process collectives). Processes other than 0 log warnings only.

  Args:
    coordinator_address: 'host:port' of process 0 (default: the environment
      variable JAX_COORDINATOR_ADDRESS, read by JAX, or auto-detection).
    num_processes: processes in the job.
    process_id: this process, 0..num_processes-1.
    auto_detect: initialize even without the values above.
    heartbeat_timeout_s: seconds without heartbeats after which a process is
      declared dead and the others are stopped.

  Returns:
    True when this process is now part of a distributed job.
  """
  wanted = auto_detect or coordinator_address or (num_processes or 1) > 1
  if not wanted:
    return False
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id,
                             heartbeat_timeout_seconds=heartbeat_timeout_s)
  logging.info("jax.distributed: process %d of %d, %d local / %d global devices",
               jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())
  if jax.process_index() != 0:
    logging.set_verbosity(logging.WARNING)
  return True


def create_mesh() -> Mesh:
  """A 1-D mesh over every device of every process."""
  return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  """Raises ValueError unless the global batch splits evenly over devices."""
  if batch_size % mesh.size:
    raise ValueError(
        f"global batch size {batch_size} must be divisible by the {mesh.size} "
        f"devices; set --config.input.batch_size to a multiple of {mesh.size}")


def shard_batch(batch: dict[str, Any], mesh: Mesh) -> dict[str, jax.Array]:
  """Assembles each process's numpy batch into global arrays sharded on 'data'.

  The rows of process 0 come first, then those of process 1, and so on.
  Non-numeric entries (e.g. image names) stay on the host and are dropped.
  """
  sharding = batch_sharded(mesh)
  return {
      k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
      for k, v in batch.items()
      if np.asarray(v).dtype.kind in "biuf"
  }


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places a pytree (e.g. the train state) replicated on every device."""
  return jax.device_put(tree, replicated(mesh))


def local_part(x: jax.Array, mesh: Mesh) -> np.ndarray:
  """This process's rows of a batch-sharded global array, as numpy.

  On one host, the whole array; on several, the rows that match the
  process-local batch this process fed in.
  """
  if jax.process_count() == 1:
    return np.asarray(jax.device_get(x))
  return np.asarray(multihost_utils.global_array_to_host_local_array(
      x, mesh, P(DATA_AXIS)))


def gather_json(value: Any) -> list[Any]:
  """Every process's `value`, in process order, on every process.

  `value` is anything JSON can hold, plus numpy arrays and scalars at any
  depth: arrays come back with their dtype, shape and values exactly, so
  ragged per-process lists (a variable number of persons per image) gather
  as they are. A collective: every process must call it.
  """
  if jax.process_count() == 1:
    return [value]
  data = np.frombuffer(json.dumps(value, default=_encode_numpy).encode(), np.uint8)
  sizes = multihost_utils.process_allgather(np.array([data.size], np.int32))
  padded = np.zeros(int(sizes.max()), np.uint8)
  padded[:data.size] = data
  gathered = multihost_utils.process_allgather(padded)
  return [json.loads(bytes(row[:n]), object_hook=_decode_numpy)
          for row, n in zip(gathered, sizes.ravel())]


_NUMPY_TAG = "__numpy__"


def _encode_numpy(value: Any) -> Any:
  # Python floats print in full (repr), so float32/64 values round-trip exactly.
  if isinstance(value, np.ndarray):
    return {_NUMPY_TAG: value.dtype.str, "shape": list(value.shape),
            "data": value.ravel().tolist()}
  if isinstance(value, np.generic):
    return value.item()
  raise TypeError(f"gather_json: cannot send a {type(value).__name__}")


def _decode_numpy(value: dict[str, Any]) -> Any:
  if _NUMPY_TAG in value:
    return np.asarray(value["data"], np.dtype(value[_NUMPY_TAG])).reshape(value["shape"])
  return value


def gather_process_states(state: dict[str, Any]) -> dict[str, Any]:
  """Every process's host state (its input position), for process 0 to save.

  A collective: every process must call it.
  """
  return {"process_count": jax.process_count(), "processes": gather_json(state)}


def own_process_state(saved: dict[str, Any]) -> dict[str, Any]:
  """This process's entry of a `gather_process_states` value.

  A state saved as a plain dict (by one process, before states were kept
  per process) is returned as it is.

  Raises:
    ValueError: the state was saved by another number of processes.
  """
  if "processes" not in saved:
    return saved
  states = saved["processes"]
  if len(states) != jax.process_count():
    raise ValueError(f"the checkpoint holds the input positions of {len(states)} processes, "
                     f"this job has {jax.process_count()}: restart with {len(states)}")
  return states[jax.process_index()]


def lost_processes(timeout_s: float = _LOST_CHECK_S) -> list[int]:
  """After a failed collective: the processes that did not fail with us.

  Every surviving process reaches this after the same failed collective and
  says so in the distributed key-value store; whoever has not within
  `timeout_s` is lost. When the store itself (held by process 0) is gone,
  process 0 is lost.

  Returns:
    The lost process ids, [] on one process.
  """
  if jax.process_count() == 1:
    return []
  client = jax_distributed.global_state.client
  everyone = set(range(jax.process_count()))
  try:
    client.key_value_set(f"{_LOST_CHECK_KEY}/{jax.process_index()}", "1",
                         allow_overwrite=True)
    deadline = time.monotonic() + timeout_s
    while True:
      present = {int(k.rsplit("/", 1)[1])
                 for k, _ in client.key_value_dir_get(_LOST_CHECK_KEY + "/")}
      if present >= everyone or time.monotonic() > deadline:
        return sorted(everyone - present)
      time.sleep(0.5)
  except Exception:  # pylint: disable=broad-except  (any RPC error: the store is gone)
    return [0]


def raise_if_process_lost(error: BaseException) -> None:
  """In an `except` of a multi-process job: raises ProcessLostError naming
  the lost processes when `error` is a failed collective and some process
  did not fail with this one; otherwise returns (re-raise `error`).

  Waits up to a few seconds for the other survivors (`lost_processes`).

  Raises:
    ProcessLostError: with the message, also logged.
  """
  if jax.process_count() == 1 or not _is_communication_error(error):
    return
  lost = lost_processes()
  if lost:
    message = lost_process_message(error, lost)
    logging.error(message)
    raise ProcessLostError(message) from error


def _is_communication_error(error: BaseException) -> bool:
  """A failure of the runtime (a collective, the coordination service), not
  an error of this process's own Python code, which the others do not share."""
  return isinstance(error, jax.errors.JaxRuntimeError) or "Gloo" in str(error)


def lost_process_message(error: BaseException, lost: list[int]) -> str:
  """What a survivor says: which processes are lost, what to do, the cause."""
  count = jax.process_count()
  names = ", ".join(f"process {i}" + (" (the coordinator)" if i == 0 else "") for i in lost)
  cause = (str(error).splitlines() or [""])[0][:300]
  return (f"process {jax.process_index()} of {count} (pid {os.getpid()}): lost {names}; "
          f"stopping. Restart all {count} processes with the same flags to resume from "
          f"the last checkpoint. Cause: {type(error).__name__}: {cause}")
