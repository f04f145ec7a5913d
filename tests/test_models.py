"""StackedHourglass: shapes and parameter counts of the thesis models, BN modes,
the scanned stacks against the unrolled ones."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from triplet_pose.models import StackedHourglass
from triplet_pose.models import hourglass


# Parameter counts of the reference graph, computed from the architecture
# description (DESIGN.md), not from our modules. Every conv has a bias; a BN
# has a scale and a bias (and two running statistics, counted separately).
def _conv(cin, cout, k):
  return cin * cout * k * k + cout


def _bn(c):
  return 2 * c


def _residual(cin, cout):
  mid = cout // 2
  n = _bn(cin) + _conv(cin, mid, 1) + _bn(mid) + _conv(mid, mid, 3) + _bn(mid) + _conv(mid, cout, 1)
  return n + (_conv(cin, cout, 1) if cin != cout else 0)  # used skip only


def _hourglass(depth, f):
  inner = _hourglass(depth - 1, f) if depth > 1 else _residual(f, f)
  return 3 * _residual(f, f) + inner


def reference_used_parameters(stacks, cin, k, f=256, depth=4, stem=128):
  pre = (_conv(cin, stem // 2, 7) + _bn(stem // 2) + _residual(stem // 2, stem)
         + _residual(stem, stem) + _residual(stem, f))
  per_stack = _hourglass(depth, f) + _residual(f, f) + _conv(f, f, 1) + _bn(f) + _conv(f, k, 1)
  merges = (stacks - 1) * (_conv(k, f, 1) + _conv(f, f, 1))
  return pre + stacks * per_stack + merges


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("stacks,cin,k,scan", [(8, 3, 16, True), (5, 19, 26, True),
                                               (8, 3, 16, False)])
def test_thesis_models_shapes_and_parameter_counts(stacks, cin, k, scan):
  model = StackedHourglass(num_stacks=stacks, num_features=256, num_keypoints=k,
                           scan_stacks=scan)
  images = jax.ShapeDtypeStruct((4, 256, 256, cin), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), images)
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False)["joints"], variables, images)
  assert out.shape == (4, stacks, 64, 64, k)
  assert out.dtype == jnp.float32
  assert _count(variables["params"]) == reference_used_parameters(stacks, cin, k)
  # Running mean and variance for every batch-norm scale and bias.
  assert _count(variables["batch_stats"]) == sum(
      int(np.prod(v.shape)) for p, v in jax.tree_util.tree_leaves_with_path(variables["params"])
      if "bn" in jax.tree_util.keystr(p))


@pytest.mark.parametrize("stem", [32, 256])
def test_stem_width_changes_only_the_stem(stem):
  model = StackedHourglass(num_stacks=2, num_features=64, num_keypoints=16,
                           hourglass_depth=3, stem_features=stem)
  images = jax.ShapeDtypeStruct((2, 128, 128, 3), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), images)
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False)["joints"], variables, images)
  assert out.shape == (2, 2, 32, 32, 16)
  assert variables["params"]["pre_conv"]["kernel"].shape == (7, 7, 3, stem // 2)
  assert _count(variables["params"]) == reference_used_parameters(
      2, 3, 16, f=64, depth=3, stem=stem)
  assert _count(variables["params"]) != reference_used_parameters(2, 3, 16, f=64, depth=3)


def test_thesis_joint_model_is_about_25_million_parameters():
  # Sanity check of the formula itself against the published order of magnitude.
  assert 24e6 < reference_used_parameters(8, 3, 16) < 27e6


def test_non_square_input_and_bfloat16_compute():
  model = StackedHourglass(num_stacks=2, num_features=16, num_keypoints=5,
                           hourglass_depth=2, dtype=jnp.bfloat16)
  x = jnp.ones((2, 32, 48, 7))
  variables = model.init(jax.random.key(0), x)
  assert jax.tree.leaves(variables["params"])[0].dtype == jnp.float32
  y = model.apply(variables, x)["joints"]
  assert y.shape == (2, 2, 8, 12, 5) and y.dtype == jnp.float32


def test_train_mode_updates_batch_stats_and_eval_mode_is_deterministic():
  model = StackedHourglass(num_stacks=1, num_features=16, num_keypoints=3, hourglass_depth=1)
  x = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3))
  variables = model.init(jax.random.key(0), x)
  _, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
  before = jax.tree.leaves(variables["batch_stats"])
  after = jax.tree.leaves(updates["batch_stats"])
  assert any(not np.allclose(a, b) for a, b in zip(before, after))
  # Eval mode: one example's output does not depend on the rest of the batch.
  full = model.apply(variables, x)["joints"]
  single = model.apply(variables, x[:1])["joints"]
  np.testing.assert_allclose(full[:1], single, rtol=1e-5, atol=1e-6)


def test_xavier_init():
  model = StackedHourglass(num_stacks=1, num_features=32, num_keypoints=4, hourglass_depth=1)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
  kernel = variables["params"]["pre_conv"]["kernel"]  # (7, 7, 3, 64)
  fan_in, fan_out = 7 * 7 * 3, 7 * 7 * 64
  limit = np.sqrt(6 / (fan_in + fan_out))
  assert np.abs(kernel).max() <= limit
  assert np.abs(kernel).max() > 0.9 * limit
  assert np.allclose(variables["params"]["pre_conv"]["bias"], 0)


@pytest.mark.parametrize("shape,match", [((16, 16, 3), "NHWC"),
                                         ((1, 20, 16, 3), "multiples of 16")])
def test_bad_input_shapes_raise_clear_errors(shape, match):
  model = StackedHourglass(num_stacks=1, num_features=8, num_keypoints=2, hourglass_depth=2)
  with pytest.raises(ValueError, match=match):
    model.init(jax.random.key(0), jnp.zeros(shape))


def _tiny(stacks, **kw):
  return StackedHourglass(num_stacks=stacks, num_features=16, num_keypoints=5,
                          hourglass_depth=2, stem_features=16, **kw)


def test_scanned_layout_stacks_each_stacks_parameters():
  x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
  scanned = jax.eval_shape(_tiny(3).init, jax.random.key(0), x)
  unrolled = jax.eval_shape(_tiny(3, scan_stacks=False).init, jax.random.key(0), x)
  params = scanned["params"]
  assert set(params) == {"pre_conv", "pre_bn", "pre_res1", "pre_res2", "pre_res3", "stacks",
                         "merge_pred", "merge_features"}
  assert set(params["stacks"]) == set(hourglass.STACK_MODULES)
  assert params["stacks"]["out"]["kernel"].shape == (3, 1, 1, 16, 5)
  assert params["stacks"]["hourglass"]["up1"]["conv2"]["kernel"].shape == (3, 3, 3, 8, 8)
  assert scanned["batch_stats"]["stacks"]["features_bn"]["mean"].shape == (3, 16)
  # No merge after the last stack: two of each.
  assert params["merge_pred"]["kernel"].shape == (2, 1, 1, 5, 16)
  assert params["merge_features"]["bias"].shape == (2, 16)
  assert _count(params) == _count(unrolled["params"])
  converted = jax.eval_shape(lambda v: hourglass.scan_layout(v, 3), unrolled)
  assert jax.tree.map(lambda a: a.shape, converted) == jax.tree.map(lambda a: a.shape, scanned)
  one = jax.eval_shape(_tiny(1).init, jax.random.key(0), x)["params"]
  assert "merge_pred" not in one and one["stacks"]["out"]["kernel"].shape[0] == 1


@pytest.mark.parametrize("stacks,remat,unroll", [(1, False, 1), (3, False, 1), (3, True, 1),
                                                 (3, False, 3)])
def test_scanned_stacks_compute_what_the_unrolled_stacks_compute(stacks, remat, unroll):
  """The same weights in both layouts: the same heatmaps, statistics and gradients
  (also with the scan's loop unrolled)."""
  unrolled = _tiny(stacks, scan_stacks=False, remat=remat)
  scanned = _tiny(stacks, remat=remat, scan_unroll=unroll)
  x = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3))
  variables = unrolled.init(jax.random.key(0), x)
  # Batch statistics away from their initial 0 / 1, so that eval mode uses them.
  variables, _ = _train_outputs(unrolled, variables, x)
  mapped = hourglass.scan_layout(variables, stacks)
  back = hourglass.unrolled_layout(mapped, stacks)
  assert jax.tree.structure(back) == jax.tree.structure(variables)
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(variables)))

  want = unrolled.apply(variables, x)["joints"]
  got = scanned.apply(mapped, x)["joints"]
  assert got.shape == want.shape == (2, stacks, 8, 8, 5)
  scale = float(jnp.abs(want).max())
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale)

  (want_vars, want_out), want_grads = _train_outputs(unrolled, variables, x, grads=True)
  (got_vars, got_out), got_grads = _train_outputs(scanned, mapped, x, grads=True)
  np.testing.assert_allclose(got_out, want_out, rtol=0, atol=1e-5 * float(jnp.abs(want_out).max()))
  for name, got_tree, want_tree in (("batch stats", got_vars["batch_stats"], want_vars["batch_stats"]),
                                    ("gradients", got_grads, want_grads)):
    got_tree = hourglass.unrolled_layout({"x": got_tree}, stacks)["x"]
    assert jax.tree.structure(got_tree) == jax.tree.structure(want_tree), name
    # Relative to the largest value: gradients of biases followed by batch
    # norm are rounding noise around 0.
    scale = max(float(jnp.abs(w).max()) for w in jax.tree.leaves(want_tree))
    worst = max(float(jnp.abs(g - w).max())
                for g, w in zip(jax.tree.leaves(got_tree), jax.tree.leaves(want_tree)))
    assert worst <= 5e-5 * scale, (name, worst / scale)


def _train_outputs(model, variables, x, *, grads=False):
  """((variables with the new batch statistics, heatmaps), parameter gradients)."""
  def loss(params):
    out, updates = model.apply({"params": params, "batch_stats": variables["batch_stats"]},
                               x, train=True, mutable=["batch_stats"])
    heatmaps = out["joints"]
    # Weighted per stack, so that every stack's gradient path counts.
    weights = jnp.arange(1, heatmaps.shape[1] + 1, dtype=heatmaps.dtype)
    return jnp.sum(jnp.sin(heatmaps) * weights[:, None, None, None]), (updates, heatmaps)
  (_, (updates, heatmaps)), g = jax.value_and_grad(loss, has_aux=True)(variables["params"])
  out = ({"params": variables["params"], **updates}, heatmaps)
  return (out, g) if grads else out
