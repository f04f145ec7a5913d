"""Training and evaluation curves: PCKh against the threshold, loss per stack."""

from __future__ import annotations

import json
import pathlib
from typing import Mapping, Sequence

from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util


def pckh_curve_figure(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                      *, title: str = "PCKh vs threshold") -> Figure:
  """PCKh (Mean, %) against the threshold, one line per labelled curve."""
  fig = Figure(figsize=(5.5, 4.0), dpi=100)
  FigureCanvasAgg(fig)
  ax = fig.subplots()
  for label, (thresholds, values) in curves.items():
    ax.plot(thresholds, 100 * np.asarray(values), lw=2, label=label)
  ax.set_xlabel("threshold (head sizes)")
  ax.set_ylabel("PCKh (%)")
  ax.set_ylim(0, 100)
  ax.set_xlim(left=0)
  ax.grid(alpha=0.3)
  ax.axvline(0.5, color="gray", lw=0.8, ls="--")
  ax.set_title(title, fontsize=11)
  if curves:
    ax.legend(fontsize=8, loc="upper left")
  fig.tight_layout()
  return fig


def read_loss_per_stack(workdir: str | pathlib.Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{'train/loss_stack_1': (steps, values), ..., 'eval/eval_loss_stack_1': ...}.

  Reads `metrics.jsonl` in the workdir, or else its TensorBoard logs.

  Raises:
    FileNotFoundError: when the workdir holds neither.
  """
  workdir = pathlib.Path(workdir)
  series: dict[str, list[tuple[int, float]]] = {}
  jsonl = workdir / "metrics.jsonl"
  if jsonl.exists():
    for line in jsonl.read_text().splitlines():
      if not line.strip():
        continue
      record = json.loads(line)
      for name, value in record.items():
        if "loss_stack_" in name:
          series.setdefault(name, []).append((int(record["step"]), float(value)))
  elif (workdir / "tensorboard").exists():
    acc = event_accumulator.EventAccumulator(str(workdir / "tensorboard"),
                                             size_guidance={"tensors": 0})
    acc.Reload()
    for name in acc.Tags().get("tensors", []):
      if "loss_stack_" in name:
        series[name] = [(e.step, float(np.asarray(_tensor_value(e.tensor_proto))))
                        for e in acc.Tensors(name)]
  else:
    raise FileNotFoundError(f"{workdir} has neither metrics.jsonl nor tensorboard/")
  return {k: (np.array([s for s, _ in v]), np.array([x for _, x in v]))
          for k, v in sorted(series.items(), key=lambda kv: _stack_key(kv[0]))}


def _tensor_value(proto):
  return tensor_util.make_ndarray(proto)


def _stack_key(name: str) -> tuple[str, int]:
  prefix, _, stack = name.rpartition("_")
  return prefix, int(stack) if stack.isdigit() else 0


def loss_per_stack_figure(workdir: str | pathlib.Path, *, smooth: int = 1) -> Figure:
  """Training (and validation) loss of every stack against the step (thesis fig. 2-5).

  Args:
    workdir: a training workdir.
    smooth: moving-average window in logged points (1 = raw).
  """
  series = read_loss_per_stack(workdir)
  fig = Figure(figsize=(9.0, 3.8), dpi=100)
  FigureCanvasAgg(fig)
  axes = fig.subplots(1, 2, squeeze=False)[0]
  for ax, prefix, title in ((axes[0], "train/", "training loss per stack"),
                            (axes[1], "eval/", "validation loss per stack")):
    names = [n for n in series if n.startswith(prefix)]
    for i, name in enumerate(names):
      steps, values = series[name]
      if smooth > 1 and len(values) >= smooth:
        values = np.convolve(values, np.ones(smooth) / smooth, mode="valid")
        steps = steps[smooth - 1:]
      ax.plot(steps, values, lw=1.5, label=f"stack {_stack_key(name)[1]}",
              color=colormaps["viridis"](i / max(len(names) - 1, 1)))
    ax.set_title(title, fontsize=11)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    if names:
      ax.set_yscale("log")
      ax.legend(fontsize=8)
    else:
      ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
  fig.tight_layout()
  return fig
