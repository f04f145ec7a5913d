"""Data parallelism with `jax.sharding`: one mesh axis, 'data'.

Parameters and optimizer state are replicated; every batch is split along its
first axis over all devices of all processes. `jit` then computes global
means (the loss, and batch-norm statistics) exactly as on one device, so no
`pmap` or `axis_name` is needed. The same code runs multi-host after
`jax.distributed.initialize()`.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def initialize_distributed(enabled: bool) -> None:
  """Calls `jax.distributed.initialize()` (multi-host) when `enabled`."""
  if enabled:
    jax.distributed.initialize()
    logging.info("jax.distributed: process %d of %d, %d local / %d global devices",
                 jax.process_index(), jax.process_count(),
                 jax.local_device_count(), jax.device_count())


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
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return np.asarray(multihost_utils.global_array_to_host_local_array(
      x, mesh, P(DATA_AXIS)))
