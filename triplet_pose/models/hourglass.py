"""Stacked hourglass network (Newell et al. 2016), as used by the thesis.

The graph is exactly that of the public PyTorch stacked hourglass
(princeton-vl), so its MPII checkpoints map onto these parameters
(`triplet_pose.models.torch_import`):

* Residual(in -> out): BN-ReLU-Conv1x1(out/2) -> BN-ReLU-Conv3x3(out/2) ->
  BN-ReLU-Conv1x1(out), plus the identity, or a Conv1x1 when in != out.
* Pre: Conv7x7/2(64)-BN-ReLU -> Residual(128) -> MaxPool2 -> Residual(128) ->
  Residual(F): an (H/4, W/4, F) map. (Widths S/2 and S with `stem_features`
  S; 128 is the reference's. The block at H/2 costs most of a narrow model's
  time, so small CPU models narrow it.)
* Hourglass(n): Residual up branch + [MaxPool, Residual, Hourglass(n-1) or
  Residual, Residual, nearest 2x upsample].
* Per stack: hourglass -> features (Residual, Conv1x1-BN-ReLU) -> Conv1x1 to K
  heatmaps; between stacks x += merge_pred(pred) + merge_feat(features).

The stacks are identical, so they run as one `nn.scan` (`scan_stacks=True`,
the default): XLA compiles one stack instead of one per stack, which makes
the thesis's 8-stack train step compile several times faster
(benchmarks/compile_time.py) at the same step time. Every per-stack
parameter and batch statistic then has a leading stack axis, under `stacks`
(`stacks/hourglass`, `stacks/features_res`, `stacks/features_conv`,
`stacks/features_bn`, `stacks/out`). The last stack has no merge layers: the
merges are two stacked convolutions outside the scan (`merge_pred`,
`merge_features`, with S-1 kernels), fed to the scan with a zero kernel
appended for the last stack, whose merged output is dropped. (That one
extra 1x1 convolution costs ~1% of the step; a second copy of the stack
outside the scan would double the compile time instead.)

On the CPU the scan costs step time: the backward pass needs every stack's
activations, which the scan copies into stacked buffers and back (about
2 GB a step for the thesis model at batch 4; benchmarks/compile_time.py
measures the step times, docs/performance.md holds them). `scan_unroll=S`
unrolls the scan's loop (still one traced stack, the same parameters): XLA
then keeps the activations where they are (the unrolled step time) and
compiles faster than the unrolled stacks, slower than the rolled scan. `scan_stacks=False`
unrolls the stacks into a Python loop with one module per stack
(`hourglass_{s}`, ..., `merge_pred_{s}`): the same outputs, the layout of
the reference's per-stack modules; `scan_layout` and `unrolled_layout`
convert variables between the two.

Every convolution has a bias and symmetric (k-1)/2 padding, as in PyTorch;
weights are Xavier-uniform. Convolutions go through `cpu_conv.conv2d` and
max pools are written as maxima of slices: the same values and parameters as
`nn.Conv` / `nn.max_pool`, with gradients that are fast on XLA:CPU
(benchmarks/train_step.py). Batch norm uses PyTorch's momentum 0.1 and eps 1e-5;
it and the ReLU after it go through `cpu_norm.BatchNormReLU` (`nn.BatchNorm`'s
variables, a hand-written backward pass).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from triplet_pose.models import cpu_conv
from triplet_pose.models import cpu_norm

_xavier = nn.initializers.xavier_uniform()


class _Conv(nn.Module):
  """`nn.Conv` with bias and (k-1)/2 padding: the same parameters and values.

  It computes through `cpu_conv.conv2d`, whose weight gradients are several
  times faster on XLA:CPU than those of `nn.Conv` (on the CPU, native kernels
  when they build; XLA's own convolutions on other backends).
  """
  features: int
  kernel: int
  stride: int = 1
  dtype: Any = jnp.float32
  impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel
    kernel = self.param("kernel", _xavier, (k, k, x.shape[-1], self.features),
                        jnp.float32)
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,),
                      jnp.float32)
    return _apply_conv(x, kernel, bias, stride=self.stride, dtype=self.dtype,
                       impl=self.impl)


def _apply_conv(x: jax.Array, kernel: jax.Array, bias: jax.Array, *, stride: int = 1,
                dtype: Any, impl: str) -> jax.Array:
  x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=dtype)
  return cpu_conv.conv2d(x, kernel, stride=stride, impl=impl) + bias


def _conv(features: int, kernel: int, *, stride: int = 1, dtype: Any,
          impl: str = "auto", name: str):
  return _Conv(features, kernel, stride, dtype=dtype, impl=impl, name=name)


def _norm_relu(train: bool, *, dtype: Any, name: str):
  """relu(BatchNorm(x)): `nn.BatchNorm`'s variables, with a fused backward pass."""
  return cpu_norm.BatchNormReLU(use_running_average=not train, momentum=0.9,
                                epsilon=1e-5, dtype=dtype, name=name)


def _max_pool(x: jax.Array) -> jax.Array:
  """2x2 max pool, stride 2 (H and W even), as the maximum of four slices.

  The same values as `nn.max_pool(x, (2, 2), strides=(2, 2))`, but its
  gradient is elementwise: XLA:CPU lowers the reduce_window gradient to a
  scatter that is 8x slower. (On exact ties the gradient is split between
  the tied inputs instead of going to the first.)
  """
  b, h, w, c = x.shape
  x = x.reshape(b, h // 2, 2, w // 2, 2, c)
  return jnp.maximum(jnp.maximum(x[:, :, 0, :, 0], x[:, :, 0, :, 1]),
                     jnp.maximum(x[:, :, 1, :, 0], x[:, :, 1, :, 1]))


def _upsample_nearest(x: jax.Array) -> jax.Array:
  return jnp.repeat(jnp.repeat(x, 2, axis=-3), 2, axis=-2)


class Residual(nn.Module):
  """Pre-activation bottleneck residual block; bottleneck width is features/2."""
  features: int
  dtype: Any = jnp.float32
  conv_impl: str = "auto"  # cpu_conv.conv2d's impl

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    mid = self.features // 2
    d = self.dtype
    y = _norm_relu(train, dtype=d, name="bn1")(x)
    y = _conv(mid, 1, dtype=d, impl=self.conv_impl, name="conv1")(y)
    y = _norm_relu(train, dtype=d, name="bn2")(y)
    y = _conv(mid, 3, dtype=d, impl=self.conv_impl, name="conv2")(y)
    y = _norm_relu(train, dtype=d, name="bn3")(y)
    y = _conv(self.features, 1, dtype=d, impl=self.conv_impl, name="conv3")(y)
    if x.shape[-1] == self.features:
      skip = x
    else:
      skip = _conv(self.features, 1, dtype=d, impl=self.conv_impl, name="skip")(x)
    return skip + y


class Hourglass(nn.Module):
  """One hourglass of `depth` levels at constant width."""
  depth: int
  features: int
  dtype: Any = jnp.float32
  conv_impl: str = "auto"  # cpu_conv.conv2d's impl

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    block = functools.partial(Residual, self.features, dtype=self.dtype,
                              conv_impl=self.conv_impl)
    up = block(name="up1")(x, train)
    low = block(name="low1")(_max_pool(x), train)
    if self.depth > 1:
      low = Hourglass(self.depth - 1, self.features, dtype=self.dtype,
                      conv_impl=self.conv_impl, name="low2")(low, train)
    else:
      low = block(name="low2")(low, train)
    low = block(name="low3")(low, train)
    return up + _upsample_nearest(low)


# Modules of one stack: `{name}_{s}` unrolled, `stacks/{name}` (stack axis 0) scanned.
STACK_MODULES = ("hourglass", "features_res", "features_conv", "features_bn", "out")
# The merges into the next stack's input: S-1 of each (none after the last stack).
MERGE_MODULES = ("merge_pred", "merge_features")
_SCAN_AXES = {"params": 0, "batch_stats": 0}


class StackedHourglass(nn.Module):
  """Stacked hourglass mapping NHWC images to per-stack keypoint heatmaps.

  Attributes:
    num_stacks: number of hourglass stacks (8 for the thesis joint model, 5 for
      the triplet model).
    num_features: width F of every hourglass (256 in the thesis).
    num_keypoints: heatmaps per stack (16 joints, 26 contour points).
    hourglass_depth: downsampling levels per hourglass (4: 64 -> 4 cells).
    dtype: computation dtype (e.g. jnp.bfloat16); parameters stay float32.
    remat: recompute each hourglass in the backward pass to save memory.
    stem_features: width S of the stem's residual blocks (its first
      convolution has S/2); 128 in the reference and its checkpoints.
    output_key: the keypoint set the heatmaps locate ('joints', 'contour'),
      the key of the output dict.
    conv_impl: `cpu_conv.conv2d`'s impl ('auto': its CPU-friendly gradient on
      the CPU backend only; 'xla' or 'cpu_vjp' for A/B comparisons).
    scan_stacks: run the stacks as one `nn.scan` (compiled once; stacked
      parameters) rather than unrolled (see the module docstring).
    scan_unroll: stacks per iteration of the scan's loop (`lax.scan`'s
      unroll); num_stacks or more unrolls it: faster steps on the CPU,
      longer compilation. The parameters do not depend on it.

  Called as `model.apply(variables, images, train=False)` with images
  (batch, H, W, C) float in [0, 1], any C; H and W divisible by
  4 * 2**hourglass_depth. `train=True` uses batch statistics and needs
  `mutable=['batch_stats']`. Returns `{output_key: heatmaps}`, float32
  heatmaps of shape (batch, num_stacks, H/4, W/4, num_keypoints).
  """
  num_stacks: int
  num_features: int = 256
  num_keypoints: int = 16
  hourglass_depth: int = 4
  dtype: Any = jnp.float32
  remat: bool = False
  stem_features: int = 128
  output_key: str = "joints"
  conv_impl: str = "auto"
  scan_stacks: bool = True
  scan_unroll: int = 1

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> dict[str, jax.Array]:
    self._check_input(images)
    d, f, stem = self.dtype, self.num_features, self.stem_features
    impl = self.conv_impl
    x = _conv(stem // 2, 7, stride=2, dtype=d, impl=impl, name="pre_conv")(images.astype(d))
    x = _norm_relu(train, dtype=d, name="pre_bn")(x)
    x = Residual(stem, dtype=d, conv_impl=impl, name="pre_res1")(x, train)
    x = _max_pool(x)
    x = Residual(stem, dtype=d, conv_impl=impl, name="pre_res2")(x, train)
    x = Residual(f, dtype=d, conv_impl=impl, name="pre_res3")(x, train)
    stacks = _scanned_stacks if self.scan_stacks else _unrolled_stacks
    return {self.output_key: stacks(self, x, train).astype(jnp.float32)}

  def _check_input(self, images: jax.Array) -> None:
    if images.ndim != 4:
      raise ValueError(
          f"StackedHourglass expects NHWC images (batch, H, W, C), got shape "
          f"{tuple(images.shape)}")
    multiple = 4 * 2 ** self.hourglass_depth
    h, w = images.shape[1:3]
    if h % multiple or w % multiple:
      raise ValueError(
          f"image height and width must be multiples of {multiple} for "
          f"hourglass_depth={self.hourglass_depth}, got {h}x{w}")


def _stack(m: Any, x: jax.Array, train: bool, *, suffix: str
           ) -> tuple[jax.Array, jax.Array]:
  """One stack's (heatmaps, features), its modules named `{name}{suffix}`.

  Called inside the compact method of `m` (a StackedHourglass or the scan's
  `_Stack`, which share the size attributes), so the modules are its own.
  """
  f, d, impl = m.num_features, m.dtype, m.conv_impl
  hourglass_cls = nn.remat(Hourglass, static_argnums=(2,)) if m.remat else Hourglass
  hg = hourglass_cls(m.hourglass_depth, f, dtype=d, conv_impl=impl,
                     name=f"hourglass{suffix}")(x, train)
  feat = Residual(f, dtype=d, conv_impl=impl, name=f"features_res{suffix}")(hg, train)
  feat = _conv(f, 1, dtype=d, impl=impl, name=f"features_conv{suffix}")(feat)
  feat = _norm_relu(train, dtype=d, name=f"features_bn{suffix}")(feat)
  pred = _conv(m.num_keypoints, 1, dtype=d, impl=impl, name=f"out{suffix}")(feat)
  return pred, feat


def _unrolled_stacks(m: StackedHourglass, x: jax.Array, train: bool) -> jax.Array:
  """(B, S, h, w, K) heatmaps, one set of modules per stack."""
  predictions = []
  f, d, impl = m.num_features, m.dtype, m.conv_impl
  for s in range(m.num_stacks):
    pred, feat = _stack(m, x, train, suffix=f"_{s}")
    predictions.append(pred)
    if s < m.num_stacks - 1:
      x = (x + _conv(f, 1, dtype=d, impl=impl, name=f"merge_pred_{s}")(pred)
           + _conv(f, 1, dtype=d, impl=impl, name=f"merge_features_{s}")(feat))
  return jnp.stack(predictions, axis=1)


def _scanned_stacks(m: StackedHourglass, x: jax.Array, train: bool) -> jax.Array:
  """(B, S, h, w, K) heatmaps from one `nn.scan` over the stacks."""
  n, f = m.num_stacks, m.num_features
  merges = None  # one stack: nothing to merge
  if n > 1:
    merges = (_StackedConv1x1(n - 1, f, name="merge_pred")(m.num_keypoints),
              _StackedConv1x1(n - 1, f, name="merge_features")(f))
    # The last stack's merge, with zero weights, gives an output that is
    # dropped; the scan needs one merge per stack.
    merges = jax.tree.map(lambda a: jnp.concatenate([a, jnp.zeros_like(a[:1])]), merges)
  # No variable is broadcast into the body, so flax's check that broadcast
  # values are loop invariant (one more trace of the whole stack) has
  # nothing to check.
  scan = nn.scan(_Stack, variable_axes=_SCAN_AXES, split_rngs={"params": True},
                 in_axes=0, out_axes=0, length=n, unroll=max(1, min(m.scan_unroll, n)),
                 check_constancy_invariants=False)
  _, predictions = scan(num_features=f, num_keypoints=m.num_keypoints,
                        hourglass_depth=m.hourglass_depth, train=train, dtype=m.dtype,
                        remat=m.remat, conv_impl=m.conv_impl, name="stacks")(x, merges)
  return jnp.moveaxis(predictions, 0, 1)


class _Stack(nn.Module):
  """The scan's body: (x, this stack's merge weights) -> (next x, heatmaps)."""
  num_features: int
  num_keypoints: int
  hourglass_depth: int
  train: bool
  dtype: Any
  remat: bool
  conv_impl: str

  @nn.compact
  def __call__(self, x: jax.Array, merge: Any) -> tuple[jax.Array, jax.Array]:
    pred, feat = _stack(self, x, self.train, suffix="")
    if merge is not None:
      (pred_kernel, pred_bias), (feat_kernel, feat_bias) = merge
      conv = functools.partial(_apply_conv, dtype=self.dtype, impl=self.conv_impl)
      x = x + conv(pred, pred_kernel, pred_bias) + conv(feat, feat_kernel, feat_bias)
    return x, pred


class _StackedConv1x1(nn.Module):
  """Kernels (count, 1, 1, C_in, features) and biases (count, features) of
  `count` 1x1 convolutions, each initialised like `_Conv`'s."""
  count: int
  features: int

  @nn.compact
  def __call__(self, in_features: int) -> tuple[jax.Array, jax.Array]:
    kernel = self.param("kernel", nn.initializers.xavier_uniform(batch_axis=(0,)),
                        (self.count, 1, 1, in_features, self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros_init(), (self.count, self.features),
                      jnp.float32)
    return kernel, bias


def scan_layout(variables: dict[str, Any], num_stacks: int) -> dict[str, Any]:
  """Variables of an unrolled StackedHourglass (`scan_stacks=False`), scanned.

  Args:
    variables: {collection: tree} of a `num_stacks`-stack model with
      per-stack modules `{name}_{s}`.
    num_stacks: its number of stacks.

  Returns:
    The same arrays for `scan_stacks=True`: each stack's modules stacked
    along a new axis 0 under `stacks`, and the merges under `merge_pred` /
    `merge_features`; the other modules as they were.
  """
  out = {}
  for collection, tree in variables.items():
    tree = dict(tree)
    stacked = {name: _stack_trees([tree.pop(f"{name}_{s}") for s in range(num_stacks)])
               for name in STACK_MODULES if f"{name}_0" in tree}
    for name in MERGE_MODULES:
      if f"{name}_0" in tree:
        tree[name] = _stack_trees([tree.pop(f"{name}_{s}") for s in range(num_stacks - 1)])
    if stacked:
      tree["stacks"] = stacked
    out[collection] = tree
  return out


def unrolled_layout(variables: dict[str, Any], num_stacks: int) -> dict[str, Any]:
  """The inverse of `scan_layout`: per-stack modules `{name}_{s}`."""
  out = {}
  for collection, tree in variables.items():
    tree = dict(tree)
    for name, sub in tree.pop("stacks", {}).items():
      tree.update({f"{name}_{s}": _index_tree(sub, s) for s in range(num_stacks)})
    for name in MERGE_MODULES:
      if name in tree:
        sub = tree.pop(name)
        tree.update({f"{name}_{s}": _index_tree(sub, s) for s in range(num_stacks - 1)})
    out[collection] = tree
  return out


def _stack_trees(trees: list[Any]) -> Any:
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def _index_tree(tree: Any, i: int) -> Any:
  return jax.tree.map(lambda leaf: leaf[i], tree)
