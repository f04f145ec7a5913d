"""The CPU-friendly convolution VJP and max pool give XLA's values and gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from triplet_pose.models import cpu_conv
from triplet_pose.models import hourglass


def _rel(a, b):
  return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


@pytest.mark.parametrize("k,c_in,c_out,stride", [(1, 8, 6, 1), (3, 5, 7, 1), (7, 3, 4, 2)])
def test_conv2d_values_and_gradients_match_xla(k, c_in, c_out, stride):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 12, 12, c_in)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(k, k, c_in, c_out)), jnp.float32)
  r = jnp.asarray(rng.normal(size=(2, 12 // stride, 12 // stride, c_out)), jnp.float32)

  def loss(impl):
    return lambda x, w: jnp.sum(cpu_conv.conv2d(x, w, stride=stride, impl=impl) * r)

  y_xla = cpu_conv.conv2d(x, w, stride=stride, impl="xla")
  y_cpu = cpu_conv.conv2d(x, w, stride=stride, impl="cpu_vjp")
  assert y_cpu.shape == (2, 12 // stride, 12 // stride, c_out)
  assert _rel(y_cpu, y_xla) < 1e-6
  g_xla = jax.grad(loss("xla"), argnums=(0, 1))(x, w)
  g_cpu = jax.jit(jax.grad(loss("cpu_vjp"), argnums=(0, 1)))(x, w)
  for got, want in zip(g_cpu, g_xla):
    assert got.shape == want.shape
    assert _rel(got, want) < 1e-5


def test_impl_choice_and_errors():
  x, w = jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 2))
  with pytest.raises(ValueError, match="impl must be one of"):
    cpu_conv.conv2d(x, w, impl="cudnn")

  def weight_grad_jaxpr(impl):
    return str(jax.make_jaxpr(jax.grad(lambda w: cpu_conv.conv2d(x, w, impl=impl).sum()))(w))

  assert "dot_general" not in weight_grad_jaxpr("xla")  # XLA's dW: a convolution.
  assert "dot_general" in weight_grad_jaxpr("cpu_vjp")  # the weight gradient by taps.
  # 'auto' is chosen from the backend (these tests run on the CPU), never
  # from the environment.
  assert weight_grad_jaxpr("auto") == weight_grad_jaxpr("cpu_vjp")


def test_max_pool_matches_flax():
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 8, 6, 3)), jnp.float32)
  r = jnp.asarray(np.random.default_rng(2).normal(size=(2, 4, 3, 3)), jnp.float32)
  reference = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2))  # pylint: disable=unnecessary-lambda-assignment
  np.testing.assert_array_equal(hourglass._max_pool(x), reference(x))  # pylint: disable=protected-access
  np.testing.assert_array_equal(
      jax.grad(lambda x: jnp.sum(hourglass._max_pool(x) * r))(x),  # pylint: disable=protected-access
      jax.grad(lambda x: jnp.sum(reference(x) * r))(x))


# How the convolution's custom VJP appears in a printed jaxpr.
_CONV_VJP = f"name={cpu_conv._conv_same.__name__}\n"


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


def test_stacked_hourglass_passes_conv_impl_to_every_convolution():
  images = jax.ShapeDtypeStruct((1, 16, 16, 3), jnp.float32)

  def custom_vjp_calls(impl):
    model = hourglass.StackedHourglass(num_stacks=2, num_features=8, hourglass_depth=1,
                                       stem_features=8, conv_impl=impl)
    variables = jax.eval_shape(model.init, jax.random.key(0), images)
    def loss(variables, images):
      out, _ = model.apply(variables, images, True, mutable=["batch_stats"])
      return jnp.sum(out["joints"])
    return str(jax.make_jaxpr(loss)(variables, images)).count(
        _CONV_VJP), variables["params"]

  n_xla, params = custom_vjp_calls("xla")
  n_cpu, _ = custom_vjp_calls("cpu_vjp")
  n_kernels = sum(1 for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]
                  if path[-1].key == "kernel")
  assert n_xla == 0
  # Every convolution but the strided 7x7 stem goes through the custom VJP.
  assert n_cpu == n_kernels - 1 > 20
