"""The evaluator: a predict function and a data source, run once over the data.

As in big_vision, an evaluator is built from a `predict_fn` and the batches
it reads, and `run(state)` yields `(name, value)` pairs. Here one pass over
the data feeds every metric the evaluator holds (the loss, PCKh, a panel...),
so the model runs once per batch whatever is measured. A metric is any
object with `update(batch, predictions)` and `result() -> {name: value}`;
values are floats, or (H, W, 3) uint8 images.

Training runs the evaluator its config lists (`config.eval_metrics`) on a
schedule; `triplet_pose.evaluation` feeds the same `Pckh` metric from the
flip-test inference of restored checkpoints: one code path computes PCKh.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils

Batch = dict[str, np.ndarray]
# (state, batch) -> predictions: {'keypoints': {set: (B, K, 2) crop pixels},
# 'heatmaps': {set: (B, h, w, K)}, ...} on the host, this process's rows.
PredictFn = Callable[[Any, Batch], dict[str, Any]]


class Metric(Protocol):
  """What an evaluator feeds: accumulates over batches, then reports."""

  def update(self, batch: Batch, predictions: dict[str, Any]) -> None:
    ...

  def result(self) -> dict[str, Any]:
    ...


class Evaluator:
  """Runs `predict_fn` over the batches of `data_fn()` and feeds every metric.

  Args:
    predict_fn: (state, batch) -> predictions.
    data_fn: () -> an iterable of batches (a fresh pass each run).
    metrics: () -> the metrics to feed (fresh accumulators each run).
    num_batches: stop after this many batches (None or 0: the whole pass).
  """

  def __init__(self, predict_fn: PredictFn, data_fn: Callable[[], Iterable[Batch]],
               metrics: Callable[[], Sequence[Metric]], *,
               num_batches: int | None = None):
    self.predict_fn = predict_fn
    self.data_fn = data_fn
    self.metrics = metrics
    self.num_batches = num_batches

  def run(self, state: Any) -> Iterator[tuple[str, Any]]:
    """Yields (name, value) of every metric after one pass over the data."""
    metrics = list(self.metrics())
    for i, batch in enumerate(self.data_fn()):
      if self.num_batches and i >= self.num_batches:
        break
      predictions = self.predict_fn(state, batch)
      for metric in metrics:
        metric.update(batch, predictions)
    for metric in metrics:
      yield from metric.result().items()


def gather_rows(rows: list[np.ndarray]) -> np.ndarray:
  """Concatenates per-batch rows and, on several hosts, every process's rows.

  Each process holds its share of every (padded, equally sized) batch, so
  the gathered arrays cover the whole split once, in process order.
  """
  local = np.concatenate(rows)
  if jax.process_count() == 1:
    return local
  return np.asarray(multihost_utils.process_allgather(local, tiled=True))
