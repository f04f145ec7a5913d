"""The PyTorch stacked hourglass of princeton-vl, rebuilt as a test oracle and peer.

Written from the architecture in DESIGN.md with the module names of the public
PyTorch code (`pytorch_stacked_hourglass`), so its `state_dict` has exactly
the published key scheme:

* `pre.0.conv`, `pre.0.bn` (7x7/2 conv + BN + ReLU), `pre.1`, `pre.3`,
  `pre.4` Residual blocks, `pre.2` the max-pool (no tensors).
* Residual: `bn1`, `conv1.conv`, `bn2`, `conv2.conv`, `bn3`, `conv3.conv` and
  `skip_layer.conv`, which every block holds but uses only when its channel
  count changes.
* `hgs.{s}.0.up1/low1/low2/low3` (`low2` recursive; a Residual innermost),
  `features.{s}.0` (Residual), `features.{s}.1.conv/bn`, `outs.{s}.conv`,
  `merge_features.{s}.conv.conv`, `merge_preds.{s}.conv.conv`.

Like the reference, the network takes NHWC RGB images in [0, 1] and returns
(batch, stacks, K, H/4, W/4). It is used by the import tests
(`triplet_pose.models.torch_import`) and by `benchmarks/train_step.py`; the
library never needs it. torch is imported only when a network is built, so
importing this module costs nothing where torch is absent.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def _modules() -> dict[str, Any]:
  """Defines the torch module classes on first use (imports torch)."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top

  class Conv(nn.Module):
    """Conv (with bias, (k-1)/2 padding), optionally followed by BN and ReLU."""

    def __init__(self, inp_dim, out_dim, kernel_size=3, stride=1, bn=False, relu=True):
      super().__init__()
      self.inp_dim = inp_dim
      self.conv = nn.Conv2d(inp_dim, out_dim, kernel_size, stride,
                            padding=(kernel_size - 1) // 2, bias=True)
      self.bn = nn.BatchNorm2d(out_dim) if bn else None
      self.relu = nn.ReLU() if relu else None

    def forward(self, x):
      x = self.conv(x)
      if self.bn is not None:
        x = self.bn(x)
      if self.relu is not None:
        x = self.relu(x)
      return x

  class Residual(nn.Module):
    """Pre-activation bottleneck; `skip_layer` exists always, used if in != out."""

    def __init__(self, inp_dim, out_dim):
      super().__init__()
      mid = out_dim // 2
      self.relu = nn.ReLU()
      self.bn1 = nn.BatchNorm2d(inp_dim)
      self.conv1 = Conv(inp_dim, mid, 1, relu=False)
      self.bn2 = nn.BatchNorm2d(mid)
      self.conv2 = Conv(mid, mid, 3, relu=False)
      self.bn3 = nn.BatchNorm2d(mid)
      self.conv3 = Conv(mid, out_dim, 1, relu=False)
      self.skip_layer = Conv(inp_dim, out_dim, 1, relu=False)
      self.need_skip = inp_dim != out_dim

    def forward(self, x):
      residual = self.skip_layer(x) if self.need_skip else x
      out = self.conv1(self.relu(self.bn1(x)))
      out = self.conv2(self.relu(self.bn2(out)))
      out = self.conv3(self.relu(self.bn3(out)))
      return out + residual

  class Hourglass(nn.Module):
    """Hourglass of `n` levels at width `f`."""

    def __init__(self, n, f):
      super().__init__()
      self.up1 = Residual(f, f)
      self.pool1 = nn.MaxPool2d(2, 2)
      self.low1 = Residual(f, f)
      self.low2 = Hourglass(n - 1, f) if n > 1 else Residual(f, f)
      self.low3 = Residual(f, f)

    def forward(self, x):
      up1 = self.up1(x)
      low = self.low3(self.low2(self.low1(self.pool1(x))))
      return up1 + F.interpolate(low, scale_factor=2, mode="nearest")

  class Merge(nn.Module):

    def __init__(self, x_dim, y_dim):
      super().__init__()
      self.conv = Conv(x_dim, y_dim, 1, relu=False, bn=False)

    def forward(self, x):
      return self.conv(x)

  class PoseNet(nn.Module):
    """The stacked hourglass; NHWC [0, 1] in, (B, stacks, K, H/4, W/4) out."""

    def __init__(self, nstack, inp_dim, oup_dim, depth=4, in_channels=3, stem=128):
      super().__init__()
      self.nstack = nstack
      self.pre = nn.Sequential(
          Conv(in_channels, stem // 2, 7, 2, bn=True, relu=True),
          Residual(stem // 2, stem),
          nn.MaxPool2d(2, 2),
          Residual(stem, stem),
          Residual(stem, inp_dim))
      self.hgs = nn.ModuleList(
          [nn.Sequential(Hourglass(depth, inp_dim)) for _ in range(nstack)])
      self.features = nn.ModuleList([
          nn.Sequential(Residual(inp_dim, inp_dim),
                        Conv(inp_dim, inp_dim, 1, bn=True, relu=True))
          for _ in range(nstack)])
      self.outs = nn.ModuleList(
          [Conv(inp_dim, oup_dim, 1, relu=False, bn=False) for _ in range(nstack)])
      self.merge_features = nn.ModuleList(
          [Merge(inp_dim, inp_dim) for _ in range(nstack - 1)])
      self.merge_preds = nn.ModuleList(
          [Merge(oup_dim, inp_dim) for _ in range(nstack - 1)])

    def forward(self, imgs):
      x = self.pre(imgs.permute(0, 3, 1, 2))
      predictions = []
      for i in range(self.nstack):
        feature = self.features[i](self.hgs[i](x))
        preds = self.outs[i](feature)
        predictions.append(preds)
        if i < self.nstack - 1:
          x = x + self.merge_preds[i](preds) + self.merge_features[i](feature)
      return torch.stack(predictions, 1)

  return {"Conv": Conv, "Residual": Residual, "Hourglass": Hourglass,
          "Merge": Merge, "PoseNet": PoseNet}


def posenet(num_stacks: int, *, num_features: int = 256, num_keypoints: int = 16,
            hourglass_depth: int = 4, in_channels: int = 3, stem_features: int = 128):
  """A PyTorch stacked hourglass with the reference's graph and parameter names.

  Args:
    num_stacks: number of hourglass stacks.
    num_features: width of every hourglass (the reference's `inp_dim`).
    num_keypoints: heatmaps per stack (the reference's `oup_dim`).
    hourglass_depth: levels per hourglass (4 in the published models).
    in_channels: input image channels (3 in the published models).
    stem_features: width of the stem's residual blocks, as
      `StackedHourglass.stem_features` (128 in the published models).

  Returns:
    A `torch.nn.Module` (PyTorch's default initialisation) in training mode.

  Raises:
    ImportError: when torch is not installed (`pip install -e .[torch]`).
  """
  try:
    classes = _modules()
  except ImportError as e:
    raise ImportError("the PyTorch reference network needs torch: "
                      "pip install -e '.[torch]'") from e
  return classes["PoseNet"](num_stacks, num_features, num_keypoints,
                            depth=hourglass_depth, in_channels=in_channels,
                            stem=stem_features)


def heatmap_loss(predictions, targets):
  """The reference's training loss: MSE per stack summed over stacks.

  Args:
    predictions: (B, S, K, h, w) torch tensor.
    targets: (B, K, h, w) torch tensor.

  Returns:
    A scalar torch tensor.
  """
  squared = (predictions - targets[:, None]) ** 2
  return squared.mean(dim=(0, 2, 3, 4)).sum()
