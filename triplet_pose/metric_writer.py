"""Training metrics to the log, TensorBoard and a JSON-lines file.

Only process 0 writes. TensorBoard scalars and images go to
`WORKDIR/tensorboard`, every record also to `WORKDIR/metrics.jsonl` (easy to
load with pandas), and a one-line summary to the absl log. Every start of a
run (and every resumption) appends its `provenance` block (code, machine,
versions, time, command) to `WORKDIR/provenance.jsonl`.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import resource
import sys
import time
from typing import Mapping

import jax
import numpy as np
from absl import logging

from triplet_pose import provenance

PROVENANCE_FILE = "provenance.jsonl"


class MetricWriter:
  """Writes scalars and images for one training run."""

  def __init__(self, workdir: str | pathlib.Path):
    self._active = jax.process_index() == 0
    self._tb = None
    self._jsonl = None
    if not self._active:
      return
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    self._jsonl = open(workdir / "metrics.jsonl", "a", encoding="utf-8")
    # Which code on which machine wrote the records that follow (the
    # config is config.json beside).
    with open(workdir / PROVENANCE_FILE, "a", encoding="utf-8") as f:
      f.write(json.dumps({provenance.KEY: provenance.provenance()}) + "\n")
    # Deferred: TensorFlow (only for its summary writer) adds 2.4 s (measured) to importers.
    # Keeping it off the GPUs is the entry point's job (launch/common.py).
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    self._tf = tf
    self._tb = tf.summary.create_file_writer(str(workdir / "tensorboard"))

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self._active:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    self._jsonl.write(json.dumps({"step": int(step), **scalars}) + "\n")
    self._jsonl.flush()
    with self._tb.as_default(step=int(step)):
      for name, value in scalars.items():
        self._tf.summary.scalar(name, value)
    self._tb.flush()

  def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    """Writes (H, W, 3) or (N, H, W, 3) uint8 / [0, 1] float images."""
    if not self._active:
      return
    with self._tb.as_default(step=int(step)):
      for name, image in images.items():
        image = np.asarray(image)
        if image.ndim == 3:
          image = image[None]
        self._tf.summary.image(name, image, max_outputs=image.shape[0])
    self._tb.flush()

  def close(self) -> None:
    if self._active:
      self._jsonl.close()
      self._tb.close()


class Progress:
  """Steps/s and ETA over the last logging interval, and the memory in use.

  `rss_mb` (the process's resident memory) goes into metrics.jsonl with
  every training log line, so a leak shows as a rising `train/rss_mb`.
  """

  def __init__(self, first_step: int, last_step: int):
    self._last_step = last_step
    self._mark_step = first_step
    self._mark_time = time.perf_counter()

  def update(self, step: int) -> dict[str, float]:
    now = time.perf_counter()
    rate = (step - self._mark_step) / max(now - self._mark_time, 1e-9)
    self._mark_step, self._mark_time = step, now
    eta = (self._last_step - step) / rate if rate > 0 else math.inf
    return {"steps_per_sec": rate, "eta_sec": eta, "rss_mb": resident_memory_mb()}


def resident_memory_mb() -> float:
  """This process's resident set size in MB (now; the peak where /proc is absent)."""
  try:
    with open("/proc/self/statm", encoding="ascii") as f:
      pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
  except (OSError, ValueError, IndexError):
    # macOS: ru_maxrss is in bytes (Linux: KB), and it is the peak, not now.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def format_duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(round(seconds))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def log_line(step: int, total: int, scalars: Mapping[str, float]) -> None:
  parts = [f"step {step}/{total}"]
  for name, value in scalars.items():
    if name == "eta_sec":
      parts.append(f"ETA {format_duration(value)}")
    else:
      parts.append(f"{name} {value:.4g}")
  logging.info(" | ".join(parts))
