"""The features shared by every pose dataset of the project (MPII-TRB, synthetic).

One definition so that `mpii_trb` and `synthetic_figures` examples are
interchangeable for the input pipeline and the models.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from triplet_pose import keypoints

CROP_SIZE = 256
JPEG_QUALITY = 95


def feature_dict():
  """Features of one example (one person, one 256x256 crop): a tfds FeaturesDict."""
  k, c = keypoints.NUM_JOINTS, keypoints.NUM_CONTOUR
  return tfds.features.FeaturesDict({
      "image": tfds.features.Image(shape=(CROP_SIZE, CROP_SIZE, 3), encoding_format="jpeg"),
      # (x, y) in crop pixels, integer = pixel centre.
      "joints": tfds.features.Tensor(shape=(k, 2), dtype=np.float32),
      # 1 where the joint is annotated (the MPII loss/PCKh mask), else 0.
      "joints_visible": tfds.features.Tensor(shape=(k,), dtype=np.float32),
      "contour": tfds.features.Tensor(shape=(c, 2), dtype=np.float32),
      "contour_visible": tfds.features.Tensor(shape=(c,), dtype=np.float32),
      # PCKh normaliser in crop pixels.
      "head_size": tfds.features.Scalar(dtype=np.float32),
      # Maps crop pixels to the pixels of the original image (0-based).
      "crop_to_original": tfds.features.Tensor(shape=(2, 3), dtype=np.float32),
      "image_name": tfds.features.Text(),
      "person_index": tfds.features.Scalar(dtype=np.int32),
  })


def encode_jpeg(image: np.ndarray) -> bytes:
  """JPEG bytes of a (256, 256, 3) uint8 crop (what the Image feature stores)."""
  if image.shape != (CROP_SIZE, CROP_SIZE, 3) or image.dtype != np.uint8:
    raise ValueError(f"crop must be ({CROP_SIZE}, {CROP_SIZE}, 3) uint8, "
                     f"got {image.shape} {image.dtype}")
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY)
  return buffer.getvalue()
