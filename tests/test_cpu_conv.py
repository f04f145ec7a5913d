"""The CPU-friendly convolution VJP and max pool give XLA's values and gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from triplet_pose.models import cpu_conv
from triplet_pose.models import hourglass
from triplet_pose.models import native_kernels

needs_native = pytest.mark.skipif(
    not native_kernels.available(),
    reason=f"native CPU kernels unavailable: {native_kernels.unavailable_reason()}")


def _rel(a, b):
  return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


_CASES = [(1, 8, 6, 1), (3, 5, 7, 1), (7, 3, 4, 2)]
# Output channels a multiple of the vector width (16 floats fit both AVX2 and
# AVX-512), so that every weight gradient and stride-1 forward pass goes
# through the native kernels (and dx too where the input channels are); odd
# sizes, in-channels that leave a partial register tile, a border wider than
# the stride's step, rows shorter than a register tile, an image smaller than
# the kernel.
_NATIVE_CASES = [(1, 8, 16, 1, 12), (1, 32, 16, 1, 5), (3, 13, 32, 1, 12), (3, 32, 16, 1, 12), (5, 16, 48, 1, 7),
                 (3, 7, 48, 1, 5), (5, 16, 16, 1, 2), (7, 3, 64, 2, 12), (7, 5, 16, 2, 3),
                 (3, 20, 16, 2, 9)]


def _check_against_xla(impl, k, c_in, c_out, stride, size=12):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, size, size + 1, c_in)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(k, k, c_in, c_out)), jnp.float32)
  y_xla = cpu_conv.conv2d(x, w, stride=stride, impl="xla")
  r = jnp.asarray(rng.normal(size=y_xla.shape), jnp.float32)

  def loss(impl):
    return lambda x, w: jnp.sum(cpu_conv.conv2d(x, w, stride=stride, impl=impl) * r)

  y = cpu_conv.conv2d(x, w, stride=stride, impl=impl)
  assert y.shape == (2, -(-size // stride), -(-(size + 1) // stride), c_out)
  assert _rel(y, y_xla) < 1e-6
  g_xla = jax.grad(loss("xla"), argnums=(0, 1))(x, w)
  g = jax.jit(jax.grad(loss(impl), argnums=(0, 1)))(x, w)
  for got, want in zip(g, g_xla):
    assert got.shape == want.shape
    assert _rel(got, want) < 1e-5


@pytest.mark.parametrize("k,c_in,c_out,stride", _CASES)
def test_conv2d_values_and_gradients_match_xla(k, c_in, c_out, stride):
  _check_against_xla("cpu_vjp", k, c_in, c_out, stride)


@needs_native
@pytest.mark.parametrize("k,c_in,c_out,stride,size", _NATIVE_CASES)
def test_native_kernels_match_xla(k, c_in, c_out, stride, size):
  _check_against_xla("native", k, c_in, c_out, stride, size)
  # The kernels themselves, not a fallback, computed what they apply to.
  x, w = jnp.ones((1, size, size, c_in)), jnp.ones((k, k, c_in, c_out))
  jaxpr = str(jax.make_jaxpr(jax.grad(
      lambda x, w: cpu_conv.conv2d(x, w, stride=stride, impl="native").sum(),
      argnums=(0, 1)))(x, w))
  assert jaxpr.count("target_name=triplet_pose_conv_weight_grad") == 1
  assert jaxpr.count("target_name=triplet_pose_conv_forward") == (
      1 + (stride == 1 and c_in % native_kernels.vector_lanes() == 0))  # forward, dx


@needs_native
@pytest.mark.parametrize("k,c_in,c_out,stride", _CASES)
def test_native_falls_back_where_the_kernel_does_not_apply(k, c_in, c_out, stride):
  # Output channels that are not a multiple of the vector width.
  _check_against_xla("native", k, c_in, c_out, stride)


@needs_native
def test_native_weight_gradient_is_reproducible_and_checks_shapes():
  # Big enough for several units of work, each with its own partial sum: the
  # partials are all added, in a fixed order, so the result is XLA's up to
  # rounding and bit-identical from run to run.
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.normal(size=(2, 40, 40, 16)), jnp.float32)
  dy = jnp.asarray(rng.normal(size=(2, 40, 40, 32)), jnp.float32)
  f = jax.jit(lambda x, dy: native_kernels.conv_weight_grad(x, dy, kernel_size=3, stride=1, pad=1))
  first = np.asarray(f(x, dy))
  w = jnp.zeros((3, 3, 16, 32))
  want = jax.vjp(lambda w: cpu_conv.conv2d(x, w, impl="xla"), w)[1](dy)[0]
  assert _rel(first, want) < 1e-5
  for _ in range(5):
    np.testing.assert_array_equal(np.asarray(f(x, dy)), first)
  with pytest.raises(ValueError, match="multiple of"):
    native_kernels.conv_weight_grad(x, dy[..., :7], kernel_size=3, stride=1, pad=1)
  with pytest.raises(ValueError, match=r"must be \(k, k, 16, C_out\)"):
    native_kernels.conv_forward(x, jnp.ones((3, 3, 8, 16)))


def test_impl_choice_and_errors():
  x, w = jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 2))
  with pytest.raises(ValueError, match="impl must be one of"):
    cpu_conv.conv2d(x, w, impl="cudnn")

  def weight_grad_jaxpr(impl):
    return str(jax.make_jaxpr(jax.grad(lambda w: cpu_conv.conv2d(x, w, impl=impl).sum()))(w))

  assert "dot_general" not in weight_grad_jaxpr("xla")  # XLA's dW: a convolution.
  assert "dot_general" in weight_grad_jaxpr("cpu_vjp")  # the weight gradient by taps.
  # 'auto' is chosen from the backend (these tests run on the CPU) and from
  # whether the native kernels could be built.
  expected = "native" if native_kernels.available() else "cpu_vjp"
  assert weight_grad_jaxpr("auto") == weight_grad_jaxpr(expected)


def test_max_pool_matches_flax():
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 8, 6, 3)), jnp.float32)
  r = jnp.asarray(np.random.default_rng(2).normal(size=(2, 4, 3, 3)), jnp.float32)
  reference = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2))  # pylint: disable=unnecessary-lambda-assignment
  np.testing.assert_array_equal(hourglass._max_pool(x), reference(x))  # pylint: disable=protected-access
  np.testing.assert_array_equal(
      jax.grad(lambda x: jnp.sum(hourglass._max_pool(x) * r))(x),  # pylint: disable=protected-access
      jax.grad(lambda x: jnp.sum(reference(x) * r))(x))


# How the convolution's custom VJP appears in a printed jaxpr.
_CONV_VJP = f"name={cpu_conv._conv_custom_vjp.__name__}\n"


def test_hourglass_gradients_do_not_depend_on_conv_impl():
  # Residual blocks (1x1, 3x3 and skip convolutions, batch norm), max pool and
  # upsampling; the image stem's strided 7x7 always uses XLA's gradient.
  x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 8, 8, 6)), jnp.float32)
  variables = jax.jit(hourglass.Hourglass(depth=1, features=8).init,
                      static_argnums=2)(jax.random.key(0), x, False)

  def grads(impl):
    block = hourglass.Hourglass(depth=1, features=8, conv_impl=impl)
    def loss(params, x):
      out, _ = block.apply({"params": params, "batch_stats": variables["batch_stats"]},
                           x, True, mutable=["batch_stats"])
      return jnp.sum(out ** 2)
    jaxpr = str(jax.make_jaxpr(loss)(variables["params"], x))
    return jax.jit(jax.grad(loss, argnums=(0, 1)))(variables["params"], x), jaxpr

  want, want_jaxpr = grads("xla")
  got, got_jaxpr = grads("cpu_vjp")
  # The attribute reaches every convolution: taps only in cpu_vjp's graph.
  # (Batch norm + ReLU has its own custom VJP in both graphs: count the
  # convolution's by name.)
  assert _CONV_VJP in got_jaxpr and _CONV_VJP not in want_jaxpr
  # Relative to the largest gradient: biases followed by batch norm have
  # gradients that are rounding noise around 0.
  scale = max(float(jnp.max(jnp.abs(w))) for w in jax.tree.leaves(want))
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    assert g.shape == w.shape
    assert float(jnp.max(jnp.abs(g - w))) <= 1e-5 * scale


@pytest.mark.parametrize("scan", [False, True])
def test_stacked_hourglass_passes_conv_impl_to_every_convolution(scan):
  images = jax.ShapeDtypeStruct((1, 16, 16, 3), jnp.float32)

  def custom_vjp_calls(impl):
    model = hourglass.StackedHourglass(num_stacks=2, num_features=8, hourglass_depth=1,
                                       stem_features=8, conv_impl=impl, scan_stacks=scan)
    variables = jax.eval_shape(model.init, jax.random.key(0), images)
    def loss(variables, images):
      out, _ = model.apply(variables, images, True, mutable=["batch_stats"])
      return jnp.sum(out["joints"])
    jaxpr = jax.make_jaxpr(loss)(variables, images).jaxpr
    if scan:  # the stacks' convolutions: those in the scan's body
      (jaxpr,) = [e.params["jaxpr"] for e in jaxpr.eqns if e.primitive.name == "scan"]
    return str(jaxpr).count(_CONV_VJP), variables["params"]

  n_xla, params = custom_vjp_calls("xla")
  n_cpu, _ = custom_vjp_calls("cpu_vjp")
  if scan:
    params = {k: v for k, v in params.items() if k in ("stacks", "merge_pred", "merge_features")}
  n_kernels = sum(1 for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]
                  if path[-1].key == "kernel")
  assert n_xla == 0
  # Every convolution but the strided 7x7 stem goes through the custom VJP.
  assert n_cpu == n_kernels - (0 if scan else 1) > 15


@needs_native
def test_native_kernels_have_second_derivatives():
  # A gradient of a gradient (differentiating through a train step) goes
  # through the kernels' own derivatives: XLA convolutions.
  rng = np.random.default_rng(5)
  x = jnp.asarray(rng.normal(size=(2, 6, 7, 16)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(3, 3, 16, 16)), jnp.float32) * 0.1

  def grad_norm(impl):
    def loss(x, w):
      return jnp.sum(jnp.tanh(cpu_conv.conv2d(x, w, impl=impl)))
    return lambda x, w: sum(jnp.sum(g ** 2) for g in jax.grad(loss, argnums=(0, 1))(x, w))

  want = jax.grad(grad_norm("xla"), argnums=(0, 1))(x, w)
  got = jax.jit(jax.grad(grad_norm("native"), argnums=(0, 1)))(x, w)
  for g, v in zip(got, want):
    assert _rel(g, v) < 1e-5
