"""One train-step measurement in this process: ours (JAX) or PyTorch's.

`benchmarks/train_step.py` runs each in a fresh worker process;
`benchmarks/gpu.py` calls them in its own. Each takes train_step.py's
argument namespace (`_batch`: the batch size, `_worker`: 'jax', 'torch' or
'torch_compile') and returns a dict of timings and memory: `first_step_s`,
`step_s`, `cpu_s` (per timed step), `step_peak_rss_mb`, `loss`, `device`,
`threads`, `isa`, `profile`, `base_rss_mb`, `peak_rss_mb` and, on an
accelerator, `device_peak_mb`.
"""

from __future__ import annotations

import os
import sys

import common

STEP_CONTENTS = {
    "jax": "ours: targets rendered + forward (train BN) + masked MSE/stack + backward "
           "+ grad norm + Adam, one jit, state donated, loss to host",
    "torch": "pytorch eager: zero_grad + forward (train BN) + MSE/stack + backward + "
             "Adam (foreach), targets precomputed, loss to host",
    "torch_compile": "pytorch compiled: as eager, forward+loss (and their backward) "
                     "under torch.compile, Adam eager",
}


def _timings(times: common.StepTimes, loss: float) -> dict:
  return {"first_step_s": times.first_s, "step_s": times.step_s, "cpu_s": times.cpu_s,
          "step_peak_rss_mb": times.peak_rss_mb, "loss": loss}


def worker_jax(args) -> dict:
  """Our step: `train.train_step` jitted, state donated, batch on the device."""
  import jax  # pylint: disable=g-import-not-at-top
  base_rss = common.current_rss_mb()
  config = common.joint_config(common.JointModel.from_args(args), args._batch)  # pylint: disable=protected-access
  step = common.jax_train_step(config, conv_impl=args.conv_impl)
  times = common.time_steps(step, args.warmup, args.steps)
  profile = _profile_jax(step, args.warmup + args.steps) if args.profile else None
  device = jax.devices()[0]
  out = {**_timings(times, step.loss), "device": common.jax_device(),
         # XLA:CPU's intra-op pool has one thread per CPU it may run on.
         "threads": common.allowed_cpus(),
         "isa": "XLA_FLAGS=" + os.environ.get("XLA_FLAGS", "") + "; "
                + common.native_kernels_report(),
         "profile": profile, "base_rss_mb": base_rss, "peak_rss_mb": common.peak_rss_mb()}
  stats = device.memory_stats() if device.platform != "cpu" else None
  if stats:
    out["device_peak_mb"] = stats.get("peak_bytes_in_use", 0) / 2**20
  return out


def _profile_jax(step, i: int) -> dict[str, float]:
  """Share of op time (summed over threads) per kind of XLA:CPU thunk, one step."""
  import tempfile  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    with jax.profiler.trace(tmp):
      step(i)
    paths = [os.path.join(d, f) for d, _, fs in os.walk(tmp) for f in fs
             if f.endswith(".xplane.pb")]
    data = jax.profiler.ProfileData.from_file(paths[0])
  seconds = {}
  for plane in data.planes:
    for line in plane.lines:
      if "XLAEigen" not in line.name and "PjRtCpu" not in line.name:
        continue  # only the threads that run XLA:CPU's thunks
      for ev in line.events:
        name = ev.name
        if name.startswith("ThunkExecutor") or "Await" in name:
          continue
        kind = ("YNNPACK (convolutions, matrix products, sums)" if name.startswith("ynn")
                else "Eigen matrix products (dW)" if name.startswith(("dot", "custom"))
                else "XLA fusions (element-wise, reductions)")
        seconds[kind] = seconds.get(kind, 0.0) + ev.duration_ns / 1e9
  return common.shares(seconds)


def _profile_torch(torch, step, i: int) -> dict[str, float]:
  """Share of op self time per kind of ATen operator, one step."""
  with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
    step(i)
  seconds = {}
  for ev in prof.key_averages():
    name = ev.key
    kind = ("convolutions" if "conv" in name else
            "batch norm" if "batch_norm" in name else
            "ReLU" if name in ("aten::clamp_min", "aten::threshold_backward", "aten::relu")
            else "other")
    seconds[kind] = seconds.get(kind, 0.0) + ev.self_cpu_time_total / 1e6
  return common.shares(seconds)


def _torch_isa(torch) -> str:
  """ATen's CPU capability and the ISA oneDNN reports (its verbose header)."""
  capability = torch.backends.cpu.get_cpu_capability()
  sys.stdout.flush()
  # oneDNN prints "onednn_verbose,...,isa:<name>" on its first verbose
  # primitive; the driver reads it from this worker's stdout.
  with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
    torch.nn.functional.conv2d(torch.ones(4, 64, 32, 32), torch.ones(64, 64, 3, 3), padding=1)
  return f"aten={capability}"


def worker_torch(args) -> dict:
  """PyTorch's step on the reference graph, eager or (`_worker='torch_compile'`) compiled."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from triplet_pose import inputs  # pylint: disable=g-import-not-at-top
  from triplet_pose import keypoints as kp  # pylint: disable=g-import-not-at-top
  from triplet_pose.models import torch_reference  # pylint: disable=g-import-not-at-top
  if args.threads:
    torch.set_num_threads(args.threads)
  config = common.joint_config(common.JointModel.from_args(args), args._batch)  # pylint: disable=protected-access
  batch = common.fake_batch(args._batch, args.image_size)  # pylint: disable=protected-access
  with jax.default_device(jax.devices("cpu")[0]):
    targets, _ = inputs.targets(config, jax.tree.map(np.asarray, batch), kp.JOINTS)
  base_rss = common.current_rss_mb()
  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  isa = _torch_isa(torch) if device.type == "cpu" and args.report_isa else ""
  images = torch.from_numpy(batch["image"].astype(np.float32) / 255.0).to(device)
  targets = torch.from_numpy(np.asarray(targets).transpose(0, 3, 1, 2).copy()).to(device)
  torch.manual_seed(0)
  net = torch_reference.posenet(args.stacks, num_features=args.features,
                                hourglass_depth=args.depth,
                                stem_features=args.stem_features).to(device).train()
  opt = torch.optim.Adam(net.parameters(), lr=2.5e-4)
  use_bf16 = args.dtype == "bfloat16"

  def forward_loss(images, targets):
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
      preds = net(images)
    return torch_reference.heatmap_loss(preds.float(), targets)

  if args._worker == "torch_compile":  # pylint: disable=protected-access
    forward_loss = torch.compile(forward_loss)
  holder = {}

  def step(_):
    opt.zero_grad(set_to_none=True)
    loss = forward_loss(images, targets)
    loss.backward()
    opt.step()
    if device.type == "cuda":
      torch.cuda.synchronize()
    holder["loss"] = float(loss)

  times = common.time_steps(step, args.warmup, args.steps)
  profile = _profile_torch(torch, step, 0) if args.profile else None
  out = {**_timings(times, holder["loss"]), "device": str(device), "isa": isa,
         "profile": profile, "threads": torch.get_num_threads(),
         "interop_threads": torch.get_num_interop_threads(),
         "base_rss_mb": base_rss, "peak_rss_mb": common.peak_rss_mb()}
  if device.type == "cuda":
    out["device_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
  return out


def run(args) -> dict:
  """The measurement `args._worker` names."""
  return (worker_jax if args._worker == "jax" else worker_torch)(args)  # pylint: disable=protected-access
