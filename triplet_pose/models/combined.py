"""One network for joints and contour points: the thesis's proposed future work.

Joint stacks predict the 16 joint heatmaps from the image; their last
prediction, upsampled to the input resolution, is concatenated with the image
(19 channels, like the separate triplet model's input) and triplet stacks
predict the 26 contour-point heatmaps. Trained end to end with the losses of
both halves summed, the triplet half learns from the joint half's real
(imperfect) predictions and its gradients also shape the joint half.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from triplet_pose import keypoints as kp
from triplet_pose.models.hourglass import StackedHourglass


class CombinedHourglass(nn.Module):
  """Joint stacks, then triplet stacks fed with the image and their heatmaps.

  Called as `model.apply(variables, images, train=False)` with RGB images
  (B, H, W, 3) in [0, 1]. Returns {'joints': (B, joint_stacks, H/4, W/4, 16),
  'contour': (B, triplet_stacks, H/4, W/4, 26)} heatmaps.
  """
  joint_stacks: int
  triplet_stacks: int
  num_features: int = 256
  hourglass_depth: int = 4
  dtype: Any = jnp.float32
  remat: bool = False
  stem_features: int = 128
  scan_unroll: int = 1  # StackedHourglass.scan_unroll

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False
               ) -> dict[str, jax.Array]:
    common = dict(num_features=self.num_features, hourglass_depth=self.hourglass_depth,
                  dtype=self.dtype, remat=self.remat,
                  stem_features=self.stem_features, scan_unroll=self.scan_unroll)
    joint_maps = StackedHourglass(self.joint_stacks, num_keypoints=kp.JOINTS.size,
                                  output_key=kp.JOINTS.name, name="joint",
                                  **common)(images, train)[kp.JOINTS.name]
    b, h, w = images.shape[:3]
    upsampled = jax.image.resize(joint_maps[:, -1], (b, h, w, kp.JOINTS.size), "bilinear")
    contour = StackedHourglass(self.triplet_stacks, num_keypoints=kp.CONTOUR.size,
                               output_key=kp.CONTOUR.name, name="triplet", **common)(
                                   jnp.concatenate([images, upsampled], -1), train)
    return {kp.JOINTS.name: joint_maps, **contour}
