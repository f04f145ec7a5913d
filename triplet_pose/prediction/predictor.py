"""The trained pose models at prediction time: crops in, keypoints out.

* `crop`: the square model input around a box (default the whole frame),
  with the affine mapping crop pixels back to the original image.
* `Predictor`: the jitted, batched joint (+ triplet) model, or one combined
  model, with flip test; keypoints come back in crop pixels, heatmap-peak
  confidences and heatmaps, keyed by keypoint set ('joints', 'contour').
* `Prediction`: one image's crop, its affine and those arrays, with the
  keypoints in original pixels on demand.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from triplet_pose import inference
from triplet_pose import keypoints as kp
from triplet_pose import transforms
from triplet_pose import workdir as workdir_lib

WHITE, BLACK = (255, 255, 255), (0, 0, 0)


def crop(image: np.ndarray, size: int, *, box: Sequence[float] | None = None,
         fill: Sequence[int] = BLACK) -> tuple[np.ndarray, np.ndarray]:
  """The square model input around `box` (default the whole image).

  The box's longer side is fitted to `size` and centred; the rest is filled.

  Args:
    image: (H, W, 3) uint8.
    size: side of the crop.
    box: inclusive (x0, y0, x1, y1) in image pixels, or None.
    fill: RGB of the padding.

  Returns:
    crop (size, size, 3) uint8, crop_to_original (2, 3) affine.
  """
  affine = crop_affine(image.shape, size, box)
  out = transforms.warp_image_np(image, affine, out_size=size, fill=fill)
  return out, transforms.invert_affine(affine)


def crop_affine(image_shape: Sequence[int], size: int,
                box: Sequence[float] | None = None) -> np.ndarray:
  """The original -> crop (2, 3) affine of `crop` for an image of `image_shape`."""
  h, w = image_shape[:2]
  box = (0, 0, w - 1, h - 1) if box is None else box
  return transforms.box_affine(np.asarray(box, np.float64), size)


def padding_fill(input_config: ml_collections.ConfigDict) -> tuple[int, int, int]:
  """The RGB the model's training crops were padded with.

  The thesis crop ('thesis', or a `mpii_trb/thesis_*` dataset cropped as the
  dataset does) pads with white, every other with black.
  """
  crop_kind = input_config.get("crop", "dataset")
  if crop_kind == "dataset":
    crop_kind = "thesis" if "thesis" in input_config.name else "mpii"
  return WHITE if crop_kind == "thesis" else BLACK


@dataclasses.dataclass
class Prediction:
  """The pose of one image, every mapping keyed by keypoint set name.

  Attributes:
    crop: (S, S, 3) uint8 model input.
    crop_to_original: (2, 3) affine from crop to original pixels.
    keypoints: {set: (K, 2)} in crop pixels.
    confidence: {set: (K,)} heatmap peaks.
    heatmaps: {set: (h, w, K)}.
  """
  crop: np.ndarray
  crop_to_original: np.ndarray
  keypoints: dict[str, np.ndarray]
  confidence: dict[str, np.ndarray]
  heatmaps: dict[str, np.ndarray]

  @classmethod
  def from_outputs(cls, crop_, crop_to_original, outputs: Mapping[str, Mapping[str, Any]],
                   index: int) -> "Prediction":
    """Example `index` of batched `inference.make_inference_fn` outputs."""
    pick = lambda key: {k: np.asarray(v[index]) for k, v in outputs[key].items()}
    return cls(np.asarray(crop_), np.asarray(crop_to_original), pick("keypoints"),
               pick("confidence"), pick("heatmaps"))

  def original(self, name: str) -> np.ndarray:
    """(K, 2) keypoints of set `name` in original image pixels."""
    return transforms.apply_affine(np.asarray(self.crop_to_original, np.float64),
                                   np.asarray(self.keypoints[name], np.float64))


class Predictor:
  """The joint model and, optionally, the triplet model, batched and jitted.

  `joint_workdir` may also hold a combined model (`model.target='combined'`),
  which predicts the joints and the contour points itself.

  Raises:
    ValueError: a workdir of the wrong kind, or a triplet workdir next to a
      combined model.
  """

  def __init__(self, joint_workdir: str, triplet_workdir: str | None = None, *,
               batch_size: int = 8, flip_test: bool = True):
    first = workdir_lib.load_model(joint_workdir, expect=("joints", "combined"))
    if first.target == "combined":
      if triplet_workdir:
        raise ValueError(f"{joint_workdir} holds a combined model, which predicts the "
                         "contour points itself: drop the triplet workdir")
      self.models = inference.PoseModels(combined=first)
    else:
      triplet = (workdir_lib.load_model(triplet_workdir, expect="contour")
                 if triplet_workdir else None)
      self.models = inference.PoseModels(joint=first, triplet=triplet)
    self.image_size = self.models.image_size
    self.batch_size = batch_size
    self.flip_test = flip_test
    self.variables = self.models.variables()
    self.infer = inference.make_inference_fn(self.models, flip_test=flip_test)
    self.fill = padding_fill(self.models.models[0].config.input)
    has_contour = self.models.triplet is not None or self.models.combined is not None
    # The keypoint sets predicted, in the order of the outputs.
    self.keypoint_names = (kp.JOINTS.name,) + ((kp.CONTOUR.name,) if has_contour else ())

  def predict_crops(self, crops: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """Runs (N, S, S, 3) uint8 crops in padded batches of `batch_size`.

    Returns:
      `inference.make_inference_fn`'s outputs for the N crops, as numpy.
    """
    outs = []
    for start in range(0, len(crops), self.batch_size):
      chunk = crops[start:start + self.batch_size]
      n = len(chunk)
      if n < self.batch_size:  # a fixed shape: one compilation
        chunk = np.concatenate([chunk, np.zeros((self.batch_size - n,) + chunk.shape[1:],
                                                chunk.dtype)])
      out = jax.device_get(self.infer(self.variables, jnp.asarray(chunk)))
      outs.append(jax.tree.map(lambda v, n=n: np.asarray(v)[:n], out))
    return jax.tree.map(lambda *parts: np.concatenate(parts), *outs)

  def predict(self, images: Sequence[np.ndarray], boxes=None) -> list[Prediction]:
    """Crops and predicts a list of (H, W, 3) uint8 images."""
    boxes = boxes if boxes is not None else [None] * len(images)
    crops, affines = zip(*(crop(im, self.image_size, box=b, fill=self.fill)
                           for im, b in zip(images, boxes)))
    out = self.predict_crops(np.stack(crops))
    return [Prediction.from_outputs(c, a, out, i) for i, (c, a) in enumerate(zip(crops, affines))]
