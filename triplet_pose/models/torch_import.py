"""Flax variables for `StackedHourglass` from a PyTorch stacked-hourglass checkpoint.

The public PyTorch stacked hourglass (princeton-vl) has our graph, and its
MPII checkpoints map 1:1 onto our parameters:

  pre.0.conv / pre.0.bn         -> pre_conv / pre_bn
  pre.1, pre.3, pre.4           -> pre_res1, pre_res2, pre_res3
  hgs.{s}.0.(up1|low1|low2|low3) -> hourglass_{s}.(up1|low1|low2|low3)
  features.{s}.0                -> features_res_{s}
  features.{s}.1.conv / .bn     -> features_conv_{s} / features_bn_{s}
  outs.{s}.conv                 -> out_{s}
  merge_preds.{s}.conv.conv     -> merge_pred_{s}
  merge_features.{s}.conv.conv  -> merge_features_{s}
  in a Residual: bn1, conv1.conv, bn2, conv2.conv, bn3, conv3.conv,
  skip_layer.conv               -> bn1, conv1, bn2, conv2, bn3, conv3, skip

The names above are those of the unrolled layout (`scan_stacks=False`);
for the default scanned layout the per-stack tensors are then stacked along
a new axis 0 (`hourglass.scan_layout`: `stacks/hourglass`, ..., `merge_pred`).

Convolution weights go from OIHW to HWIO; batch norm `weight`, `bias`,
`running_mean`, `running_var` become `scale`, `bias` (params) and `mean`,
`var` (batch_stats). The reference holds a `skip_layer` in every Residual
but uses it only when the channel count changes; the unused ones, and
`num_batches_tracked`, are dropped. Any other missing, unexpected or
mis-shaped tensor is refused with its name.

No torch needed: tensors may be numpy arrays or anything with `.numpy()`
(torch tensors), so a checkpoint loaded elsewhere converts here.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from triplet_pose.models import hourglass
from triplet_pose.models.hourglass import StackedHourglass

# Flax module name -> reference module path, for the top-level modules.
_TOP_LEVEL = (
    (re.compile(r"pre_conv"), "pre.0.conv"),
    (re.compile(r"pre_bn"), "pre.0.bn"),
    (re.compile(r"pre_res1"), "pre.1"),
    (re.compile(r"pre_res2"), "pre.3"),
    (re.compile(r"pre_res3"), "pre.4"),
    (re.compile(r"hourglass_(\d+)"), r"hgs.\1.0"),
    (re.compile(r"features_res_(\d+)"), r"features.\1.0"),
    (re.compile(r"features_conv_(\d+)"), r"features.\1.1.conv"),
    (re.compile(r"features_bn_(\d+)"), r"features.\1.1.bn"),
    (re.compile(r"out_(\d+)"), r"outs.\1.conv"),
    (re.compile(r"merge_pred_(\d+)"), r"merge_preds.\1.conv.conv"),
    (re.compile(r"merge_features_(\d+)"), r"merge_features.\1.conv.conv"),
)
# Inside a Residual or Hourglass.
_INNER = {"conv1": "conv1.conv", "conv2": "conv2.conv", "conv3": "conv3.conv",
          "skip": "skip_layer.conv"}
_PREFIXES = ("module.", "model.")


def variables_from_state_dict(state_dict: Mapping[str, Any], num_stacks: int,
                              num_features: int = 256, num_keypoints: int = 16,
                              *, hourglass_depth: int = 4,
                              num_input_channels: int = 3,
                              scan_stacks: bool = True) -> dict[str, Any]:
  """Flax variables of `StackedHourglass` from a reference PyTorch state dict.

  Args:
    state_dict: the checkpoint as published (a dict with a `state_dict`
      entry, e.g. from `torch.load`) or the state dict itself. Keys may carry
      `module.` and `model.` prefixes (DataParallel, the reference's Trainer).
      Values: torch tensors or numpy arrays.
    num_stacks: number of stacks of the checkpoint.
    num_features: its hourglass width (256 published).
    num_keypoints: its heatmaps per stack (16 for MPII).
    hourglass_depth: its hourglass levels (4 published).
    num_input_channels: its input channels (3 published).
    scan_stacks: the layout of the model the variables are for
    (`StackedHourglass.scan_stacks`).

  Returns:
    {'params': ..., 'batch_stats': ...} nested dicts of float32 arrays, ready
    for `StackedHourglass(num_stacks, num_features, num_keypoints,
    hourglass_depth, scan_stacks=scan_stacks).apply(variables, images,
    train=False)`.

  Raises:
    ValueError: naming every missing or unexpected tensor, or the first
      tensor whose shape differs from the model's.
  """
  tensors = _strip_prefixes(_unwrap(state_dict))
  # The unrolled layout names every stack's modules as the reference does.
  model = StackedHourglass(num_stacks=num_stacks, num_features=num_features,
                           num_keypoints=num_keypoints,
                           hourglass_depth=hourglass_depth, scan_stacks=False)
  size = 4 * 2 ** hourglass_depth
  abstract = jax.eval_shape(
      lambda: model.init(jax.random.key(0),
                         jnp.zeros((1, size, size, num_input_channels)),
                         train=False))
  what = (f"{num_stacks}-stack model (features={num_features}, "
          f"keypoints={num_keypoints}, depth={hourglass_depth}, "
          f"in_channels={num_input_channels})")

  plan = {}  # torch key -> (collection, flax path, kind, flax shape)
  optional = set()  # keys the reference holds but our model does not use
  for collection in ("params", "batch_stats"):
    for path, leaf in jax.tree_util.tree_flatten_with_path(abstract[collection])[0]:
      names = tuple(p.key for p in path)
      module, leaf_name = _torch_module(names[:-1]), names[-1]
      torch_name, kind = _torch_leaf(leaf_name, is_conv=_is_conv(abstract, names))
      plan[f"{module}.{torch_name}"] = (collection, names, kind, leaf.shape)
      if kind == "bn_param" and leaf_name == "scale":
        optional.add(f"{module}.num_batches_tracked")
      if leaf_name == "kernel" and names[-2] == "conv1" and not _has_skip(abstract, names):
        parent = _torch_module(names[:-2])
        optional.update({f"{parent}.skip_layer.conv.weight",
                         f"{parent}.skip_layer.conv.bias"})

  missing = sorted(set(plan) - set(tensors))
  unexpected = sorted(set(tensors) - set(plan) - optional)
  if missing or unexpected:
    lines = [f"checkpoint does not match the {what}:"]
    if missing:
      lines.append(f"  {len(missing)} missing tensor(s): {_listing(missing)}")
    if unexpected:
      lines.append(f"  {len(unexpected)} unexpected tensor(s): {_listing(unexpected)}")
    lines.append("  (wrong --num_stacks / --num_features, or a truncated checkpoint?)")
    raise ValueError("\n".join(lines))

  variables: dict[str, Any] = {"params": {}, "batch_stats": {}}
  for key, (collection, names, kind, shape) in plan.items():
    value = _to_numpy(tensors[key], key)
    expected = _torch_shape(shape, kind)
    if value.shape != expected:
      raise ValueError(
          f"checkpoint tensor {key!r} has shape {tuple(value.shape)}, the {what} "
          f"needs {expected} (for {'/'.join(names)})")
    if kind == "conv_kernel":
      value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    node = variables[collection]
    for name in names[:-1]:
      node = node.setdefault(name, {})
    node[names[-1]] = jnp.asarray(value, jnp.float32)
  return hourglass.scan_layout(variables, num_stacks) if scan_stacks else variables


def infer_architecture(state_dict: Mapping[str, Any]) -> dict[str, int]:
  """The model sizes a reference checkpoint was built with.

  Args:
    state_dict: as for `variables_from_state_dict`.

  Returns:
    {'num_stacks', 'num_features', 'num_keypoints', 'hourglass_depth',
    'num_input_channels'}, read from the tensor names and shapes; the
    checkpoint is validated only by `variables_from_state_dict`.

  Raises:
    ValueError: when the checkpoint lacks the tensors that tell the sizes.
  """
  tensors = _strip_prefixes(_unwrap(state_dict))
  stacks = {int(m.group(1)) for k in tensors
            for m in [re.match(r"hgs\.(\d+)\.", k)] if m}
  for key in ("outs.0.conv.weight", "pre.0.conv.weight"):
    if key not in tensors:
      raise ValueError(f"checkpoint has no {key!r}: not a stacked-hourglass "
                       f"checkpoint of the reference layout (keys: "
                       f"{_listing(sorted(tensors), 4)})")
  keypoints, features = _to_numpy(tensors["outs.0.conv.weight"], "outs.0.conv.weight").shape[:2]
  in_channels = _to_numpy(tensors["pre.0.conv.weight"], "pre.0.conv.weight").shape[1]
  depth = max((k.count(".low2") for k in tensors if k.startswith("hgs.0.0.")), default=0)
  return {"num_stacks": max(stacks) + 1 if stacks else 0,
          "num_features": int(features), "num_keypoints": int(keypoints),
          "hourglass_depth": depth, "num_input_channels": int(in_channels)}


def _unwrap(checkpoint: Mapping[str, Any]) -> Mapping[str, Any]:
  if not isinstance(checkpoint, Mapping):
    raise ValueError(f"expected a checkpoint dict, got {type(checkpoint).__name__}")
  inner = checkpoint.get("state_dict")
  return inner if isinstance(inner, Mapping) else checkpoint


def _strip_prefixes(tensors: Mapping[str, Any]) -> dict[str, Any]:
  out = {}
  for key, value in tensors.items():
    name = str(key)
    while name.startswith(_PREFIXES):
      name = name.split(".", 1)[1]
    if name in out:
      raise ValueError(f"checkpoint holds {name!r} twice (as {key!r} and another key)")
    out[name] = value
  return out


def _torch_module(names: tuple[str, ...]) -> str:
  """Reference module path of a Flax module path."""
  if not names:
    raise ValueError("unexpected top-level variable")
  head, rest = names[0], names[1:]
  for pattern, replacement in _TOP_LEVEL:
    if pattern.fullmatch(head):
      parts = [pattern.sub(replacement, head)]
      break
  else:
    raise ValueError(f"no reference name for Flax module {head!r}")
  parts.extend(_INNER.get(n, n) for n in rest)
  return ".".join(parts)


def _is_conv(abstract: Mapping[str, Any], names: tuple[str, ...]) -> bool:
  node = abstract["params"]
  for name in names[:-1]:
    node = node[name]
  return "kernel" in node


def _has_skip(abstract: Mapping[str, Any], names: tuple[str, ...]) -> bool:
  node = abstract["params"]
  for name in names[:-2]:
    node = node[name]
  return "skip" in node


def _torch_leaf(leaf_name: str, *, is_conv: bool) -> tuple[str, str]:
  """(reference tensor name, kind) of a Flax leaf."""
  if is_conv:
    return {"kernel": ("weight", "conv_kernel"), "bias": ("bias", "plain")}[leaf_name]
  return {"scale": ("weight", "bn_param"), "bias": ("bias", "plain"),
          "mean": ("running_mean", "plain"), "var": ("running_var", "plain")}[leaf_name]


def _torch_shape(flax_shape: tuple[int, ...], kind: str) -> tuple[int, ...]:
  if kind == "conv_kernel":
    h, w, i, o = flax_shape
    return (o, i, h, w)
  return tuple(flax_shape)


def _to_numpy(value: Any, key: str) -> np.ndarray:
  if hasattr(value, "detach"):
    value = value.detach()
  if hasattr(value, "cpu"):
    value = value.cpu()
  if hasattr(value, "float") and callable(value.float) and not isinstance(value, np.ndarray):
    value = value.float()  # torch half/bfloat16 tensors have no numpy dtype.
  if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
    value = value.numpy()
  try:
    return np.asarray(value, dtype=np.float32)
  except (TypeError, ValueError) as e:
    raise ValueError(f"checkpoint tensor {key!r} is not an array "
                     f"({type(value).__name__})") from e


def _listing(keys: list[str], limit: int = 8) -> str:
  shown = ", ".join(keys[:limit])
  return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")
