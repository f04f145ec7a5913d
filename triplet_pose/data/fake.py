"""A 'fake' input: random keypoints drawn as dots on noise, of the real shapes.

It lets training, checkpointing and resumption run end to end with no dataset
at all. Each example is a pure function of (seed, index), so the iterator's
position is its whole state. The dots make the task learnable, so a model
trained on it shows a falling loss.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from triplet_pose import keypoints as kp


def fake_example(seed: int, index: int, *, image_size: int) -> dict[str, np.ndarray]:
  """Example `index` of the fake dataset for `seed`: dots on noise."""
  rng = np.random.default_rng([seed, index])
  s = image_size
  image = rng.integers(0, 96, size=(s, s, 3), dtype=np.uint8)
  joints = rng.uniform(0.1 * s, 0.9 * s, size=(kp.NUM_JOINTS, 2)).astype(np.float32)
  contour = (joints[np.asarray(kp.CONTOUR_PARENT_JOINT)]
             + rng.normal(0, 0.03 * s, size=(kp.NUM_CONTOUR, 2))).astype(np.float32)
  contour = np.clip(contour, 0, s - 1)
  joints_visible = (rng.uniform(size=kp.NUM_JOINTS) > 0.1).astype(np.float32)
  contour_visible = (rng.uniform(size=kp.NUM_CONTOUR) > 0.1).astype(np.float32)
  yy, xx = np.mgrid[:s, :s]
  radius2 = (0.02 * s) ** 2
  for k in range(kp.NUM_JOINTS):
    if joints_visible[k]:
      dot = (xx - joints[k, 0]) ** 2 + (yy - joints[k, 1]) ** 2 <= radius2
      # Each joint has its own colour so the model can tell them apart.
      image[dot] = (np.array([k * 16, 255 - k * 16, 128 + (k % 2) * 127]))
  return dict(
      image=image,
      joints=joints,
      joints_visible=joints_visible,
      contour=contour,
      contour_visible=contour_visible,
      head_size=np.float32(0.1 * s),
      crop_to_original=np.array([[1, 0, 0], [0, 1, 0]], np.float32),
      person_index=np.int32(index),
      valid=np.bool_(True),
  )


class FakeIterator:
  """Batches of the fake dataset; checkpointable by its position."""

  def __init__(self, *, num_examples: int, batch_size: int, image_size: int,
               seed: int, repeat: bool = True, process_index: int = 0,
               process_count: int = 1):
    self.num_examples = num_examples
    self.batch_size = batch_size
    self._image_size = image_size
    self._seed = seed
    self._repeat = repeat
    self._process_index = process_index
    self._process_count = process_count
    self._position = 0  # batches yielded so far

  @property
  def batches_per_epoch(self) -> int:
    per_process = self.batch_size * self._process_count
    return -(-self.num_examples // per_process)

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if not self._repeat and self._position >= self.batches_per_epoch:
      raise StopIteration
    first = (self._position * self._process_count + self._process_index) * self.batch_size
    examples = []
    for i in range(first, first + self.batch_size):
      valid = self._repeat or i < self.num_examples
      ex = fake_example(self._seed, i % self.num_examples, image_size=self._image_size)
      ex["valid"] = np.bool_(valid)
      examples.append(ex)
    self._position += 1
    return {k: np.stack([ex[k] for ex in examples]) for k in examples[0]}

  def get_state(self) -> dict[str, Any]:
    return {"position": self._position}

  def set_state(self, state: dict[str, Any]) -> None:
    self._position = int(state["position"])
