"""Heatmap rendering and decoding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from triplet_pose import heatmaps


@pytest.mark.parametrize("kernel", ["gaussian", "pyramid"])
@pytest.mark.parametrize("height,width", [(64, 64), (48, 80), (256, 256)])
def test_round_trip_within_0_3_cells(kernel, height, width):
  rng = np.random.default_rng(0)
  margin = 2
  xy = np.stack([rng.uniform(margin, width - 1 - margin, (8, 16)),
                 rng.uniform(margin, height - 1 - margin, (8, 16))], -1)
  maps = heatmaps.render(jnp.asarray(xy), height=height, width=width, kernel=kernel)
  assert maps.shape == (8, height, width, 16)
  coords, confidence = heatmaps.decode(maps)
  assert np.abs(np.asarray(coords) - xy).max() <= 0.3
  assert np.all(np.asarray(confidence) > 0)


def test_kernels_match_their_definitions():
  xy = jnp.asarray([[[10.0, 20.0]]])
  g = heatmaps.render(xy, height=64, kernel="gaussian")[0, ..., 0]
  assert g[20, 10] == pytest.approx(1.0)
  assert g[20, 12] == pytest.approx(np.exp(-2.0), rel=1e-5)  # sigma 1
  p = heatmaps.render(xy, height=64, kernel="pyramid")[0, ..., 0]
  assert p[20, 10] == pytest.approx(1000.0)
  assert p[22, 13] == pytest.approx(1000 * (5 - 2) * (5 - 3) / 25)
  assert p[20, 15] == 0 and p[25, 10] == 0  # r = 5 cells
  # Sizes are in cells of the grid rendered, whatever its size.
  big = heatmaps.render(xy * 4, height=256, kernel="gaussian", sigma=4.0)[0, ..., 0]
  assert big[80, 40 + 8] == pytest.approx(np.exp(-2.0), rel=1e-5)
  small = heatmaps.render(xy / 2, height=32, kernel="gaussian")[0, ..., 0]
  assert small[10, 5 + 2] == pytest.approx(np.exp(-2.0), rel=1e-5)


def test_invisible_keypoints_render_empty():
  xy = jnp.asarray([[10.0, 10.0], [30.0, 30.0]])
  maps = heatmaps.render(xy, jnp.asarray([1.0, 0.0]), height=64)
  assert maps[..., 0].max() == pytest.approx(1.0)
  assert maps[..., 1].max() == 0


def test_decode_quarter_shift_toward_larger_neighbour():
  maps = np.zeros((1, 8, 8, 1), np.float32)
  maps[0, 3, 4, 0] = 1.0
  maps[0, 3, 5, 0] = 0.5  # right neighbour larger than left
  maps[0, 2, 4, 0] = 0.2  # up neighbour larger than down
  coords, conf = heatmaps.decode(jnp.asarray(maps))
  np.testing.assert_allclose(coords[0, 0], [4.25, 2.75])
  assert conf[0, 0] == 1.0


def test_decode_does_not_shift_on_the_border():
  maps = np.zeros((1, 4, 4, 1), np.float32)
  maps[0, 0, 3, 0] = 1.0
  maps[0, 0, 2, 0] = 0.3
  coords, _ = heatmaps.decode(jnp.asarray(maps))
  np.testing.assert_allclose(coords[0, 0], [3.0, 0.0])


def test_rescale_coordinates_keeps_pixel_centres_aligned():
  xy = jnp.asarray([[1.5, 2.0], [0.0, 255.0]])
  small = heatmaps.rescale_coordinates(xy, 256, 64)
  np.testing.assert_allclose(small[1], [-0.375, 63.375])
  np.testing.assert_allclose(heatmaps.rescale_coordinates(small, 64, 256), xy, atol=1e-5)
  np.testing.assert_allclose(
      heatmaps.rescale_coordinates(jnp.asarray([[3.0, 3.0]]), (8, 16), (16, 16)),
      [[3.0, 6.5]])


def test_render_is_jittable_and_vmappable():
  xy = jax.random.uniform(jax.random.key(0), (3, 5, 2), maxval=30)
  fn = jax.jit(jax.vmap(lambda p: heatmaps.render(p, height=32, kernel="pyramid")))
  np.testing.assert_allclose(fn(xy), heatmaps.render(xy, height=32, kernel="pyramid"),
                             rtol=1e-6)


def test_bad_arguments():
  with pytest.raises(ValueError, match="kernel"):
    heatmaps.render(jnp.zeros((2, 2)), height=8, kernel="box")
  with pytest.raises(ValueError, match=r"\(..., K, 2\)"):
    heatmaps.render(jnp.zeros((2, 3)), height=8)
