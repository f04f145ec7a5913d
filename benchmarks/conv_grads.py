r"""Each convolution of the hourglass alone: forward, input gradient, weight gradient, ours vs PyTorch.

  python benchmarks/conv_grads.py                 # shapes of train_step.py --quick
  python benchmarks/conv_grads.py --model=demo    # shapes of the demo's model
  python benchmarks/conv_grads.py --repeats=20 --json=/tmp/conv.json

Where benchmarks/train_step.py says how much slower or faster our whole step
is than PyTorch's, this says which convolution and which of its three parts
(forward `y = conv(x, w)`, input gradient `dx`, weight gradient `dW`) makes
the difference. Ours: `triplet_pose.models.cpu_conv.conv2d` with the default
`impl='auto'` (on the CPU: the native kernels, `native_kernels`, for every
forward pass and `dW` and for `dx` of the stride-1 convolutions; XLA's
gradient for the strided stem's `dx`, which training never computes; without
a C++ compiler, `cpu_vjp`'s XLA-only code), each part jitted on its own with
`jax.vjp`; `--impl` picks another. PyTorch: `torch.nn.functional.conv2d` and
`torch.ops.aten.convolution_backward` (oneDNN on the CPU) on channels-last
tensors, the layout it is fastest in here. Both run in this process one
after the other with every CPU this process may use; times are medians of
`--repeats` calls after one warm-up call.

A part timed alone runs without the other work of a step around it, so the
sum is not a step time; compare the ratios.
"""

from __future__ import annotations

import argparse
import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np

import common  # first: puts the repository on sys.path
from triplet_pose.models import cpu_conv


def conv_shapes(*, batch: int, image_size: int, stem: int, features: int
                ) -> list[tuple[str, int, int, int, int, int, int, int]]:
  """Every distinct convolution of a stacked hourglass (`StackedHourglass`'s graph).

  Returns (name, batch, height, width, in channels, out channels, kernel,
  stride) tuples, each named after its first layer in the graph.
  """
  half, quarter, mid = image_size // 2, image_size // 4, features // 2
  return [
      ("pre_conv 7x7/2", batch, image_size, image_size, 3, stem // 2, 7, 2),
      ("pre_res1 conv2 3x3", batch, half, half, stem // 2, stem // 2, 3, 1),
      ("pre_res1 conv3 1x1", batch, half, half, stem // 2, stem, 1, 1),
      ("pre_res3 conv2 3x3", batch, quarter, quarter, mid, mid, 3, 1),
      ("up1 conv1 1x1", batch, quarter, quarter, features, mid, 1, 1),
      ("up1 conv3 1x1", batch, quarter, quarter, mid, features, 1, 1),
      ("low1 conv2 3x3", batch, quarter // 2, quarter // 2, mid, mid, 3, 1),
  ]


SHAPES = {
    # 1 stack, 256 features, stem 128, 256 px, batch 4 (train_step.py --quick)
    "quick": conv_shapes(batch=4, image_size=256, stem=128, features=256),
    # 64 features, stem 32, 128 px, batch 16 (configs/demo.py, train_step.py --demo_model)
    "demo": conv_shapes(batch=16, image_size=128, stem=32, features=64),
}
PARTS = ("forward", "dx", "dW")


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--model", default="quick", choices=sorted(SHAPES))
  p.add_argument("--repeats", type=int, default=10, help="timed calls per part (median)")
  p.add_argument("--json", default="", help="also write the results to this file")
  p.add_argument("--impl", default="auto", choices=cpu_conv.IMPLS,
                 help="our convolution (cpu_conv.conv2d impl)")
  return p.parse_args(argv)


def time_ours(shape, repeats: int, impl: str = "auto") -> dict[str, float]:
  """ms of each part of `cpu_conv.conv2d` (with `impl`), jitted alone."""
  _, b, h, w, cin, cout, k, stride = shape
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((b, h, w, cin), np.float32))
  kernel = jnp.asarray(0.05 * rng.standard_normal((k, k, cin, cout), np.float32))
  dy = jnp.asarray(rng.standard_normal((b, h // stride, w // stride, cout), np.float32))
  conv = functools.partial(cpu_conv.conv2d, stride=stride, impl=impl)
  forward = jax.jit(conv)
  dx = jax.jit(lambda x, kernel, dy: jax.vjp(lambda a: conv(a, kernel), x)[1](dy)[0])
  dw = jax.jit(lambda x, kernel, dy: jax.vjp(lambda c: conv(x, c), kernel)[1](dy)[0])
  run = {"forward": lambda: forward(x, kernel), "dx": lambda: dx(x, kernel, dy),
         "dW": lambda: dw(x, kernel, dy)}
  return {part: common.median_ms(lambda f=f: jax.block_until_ready(f()), repeats)
          for part, f in run.items()}


def time_torch(torch, shape, repeats: int) -> dict[str, float]:
  """ms of each part of PyTorch's convolution (channels-last, oneDNN on the CPU)."""
  _, b, h, w, cin, cout, k, stride = shape
  cl = torch.channels_last
  x = torch.randn(b, cin, h, w).contiguous(memory_format=cl)
  kernel = (0.05 * torch.randn(cout, cin, k, k)).contiguous(memory_format=cl)
  dy = torch.randn(b, cout, h // stride, w // stride).contiguous(memory_format=cl)
  pad = (k - 1) // 2

  def backward(mask):
    return torch.ops.aten.convolution_backward(
        dy, x, kernel, None, [stride, stride], [pad, pad], [1, 1], False, [0, 0], 1, mask)

  with torch.no_grad():
    run = {"forward": lambda: torch.nn.functional.conv2d(x, kernel, stride=stride,
                                                         padding=pad),
           "dx": lambda: backward([True, False, False]),
           "dW": lambda: backward([False, True, False])}
    return {part: common.median_ms(f, repeats) for part, f in run.items()}


def main(argv=None) -> None:
  args = parse_args(argv)
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    sys.exit("conv_grads.py compares against PyTorch: pip install -e '.[test,peers]'")
  threads = common.allowed_cpus()
  torch.set_num_threads(threads)
  print(f"machine: {common.cpu_model()}, {threads} thread(s) for each framework; "
        + ", ".join(f"{k} {v}" for k, v in common.versions(["jax", "torch"]).items()))
  print(f"shapes of the {args.model!r} model; median of {args.repeats} calls per part (ms)")
  print(f"ours: cpu_conv.conv2d impl={args.impl!r}; {common.native_kernels_report()}")
  header = f"{'convolution':22s} {'B x H x W, Cin->Cout':22s}" + "".join(
      f" {part + ' ours':>10s} {'torch':>7s} {'ratio':>6s}" for part in PARTS)
  print(header)
  print("-" * len(header))
  rows, totals = [], {"ours": dict.fromkeys(PARTS, 0.0), "torch": dict.fromkeys(PARTS, 0.0)}
  for shape in SHAPES[args.model]:
    name, b, h, w, cin, cout = shape[:6]
    ours, peer = time_ours(shape, args.repeats, args.impl), time_torch(torch, shape, args.repeats)
    rows.append({"name": name, "shape": shape[1:], "ours_ms": ours, "torch_ms": peer})
    for part in PARTS:
      totals["ours"][part] += ours[part]
      totals["torch"][part] += peer[part]
    print(f"{name:22s} {f'{b}x{h}x{w}, {cin}->{cout}':22s}" + "".join(
        f" {ours[p]:10.2f} {peer[p]:7.2f} {ours[p] / peer[p]:5.2f}x" for p in PARTS),
          flush=True)
  print(f"{'sum':22s} {'':22s}" + "".join(
      f" {totals['ours'][p]:10.2f} {totals['torch'][p]:7.2f} "
      f"{totals['ours'][p] / totals['torch'][p]:5.2f}x" for p in PARTS))
  print("ratio: our time / PyTorch's (above 1: ours is slower)")
  if args.json:
    common.write_json(args.json, {
        "model": args.model, "rows": rows, "totals": totals, "impl": args.impl,
        "table": common.table(
            ["part", "ours ms", "PyTorch ms", "ours / PyTorch"],
            [[p, f"{totals['ours'][p]:.1f}", f"{totals['torch'][p]:.1f}",
              f"**{totals['ours'][p] / totals['torch'][p]:.2f}x**"] for p in PARTS],
            title=f"the {len(rows)} convolutions of the `{args.model}` model, summed",
            note="dx: input gradient; dW: weight gradient; above 1x ours is slower"),
        "machine": common.machine(), "date": common.utc_now(),
        "versions": common.versions(["jax", "torch"])}, config=vars(args), indent=2)


if __name__ == "__main__":
  main()
