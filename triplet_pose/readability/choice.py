"""The 4-alternative choice rule shared by the observer and the human experiment.

A choice trial shows one phosphene image and a few candidate poses drawn as
plain stick figures (`experiment.stimuli`). A reader that outputs joints
answers it by picking the candidate whose joints best match the joints it
read; a person answers by eye. Both are scored the same way, so observer
and people can be put side by side trial by trial.

Poses are compared where a stick figure leaves them: position and size are
removed (centred on the torso, scaled by torso length), and left and right
labels are free (a plain stick figure does not say which way the person
faces): the distance is the smaller of the pose's and its label-swapped
version's mean joint distance.

* `normalise(joints)`: (..., 16, 2) -> torso-centred, torso-length units.
* `pose_distance(a, b)`: mean joint distance in torso lengths, labels free.
* `choose(read, candidates)`: the index of the nearest candidate.
"""

from __future__ import annotations

import numpy as np

from triplet_pose import keypoints as kp

_J = {name: i for i, name in enumerate(kp.JOINTS.names)}
TORSO = (_J["r_hip"], _J["l_hip"], _J["r_shoulder"], _J["l_shoulder"])
# Label swap only (no mirror in x): the same picture with left and right named
# the other way round.
SWAP = np.asarray(kp.JOINTS.flip_permutation)


def normalise(joints) -> np.ndarray:
  """Joints (..., 16, 2) centred on the torso, in torso lengths.

  The torso length is the distance from the mid-hip to the mid-shoulder
  point; a degenerate torso (< 1e-6) keeps unit scale.
  """
  joints = np.asarray(joints, np.float64)
  centre = joints[..., TORSO, :].mean(axis=-2, keepdims=True)
  hips = joints[..., TORSO[:2], :].mean(axis=-2)
  shoulders = joints[..., TORSO[2:], :].mean(axis=-2)
  length = np.linalg.norm(shoulders - hips, axis=-1)[..., None, None]
  return (joints - centre) / np.maximum(length, 1e-6)


def pose_distance(a, b) -> np.ndarray:
  """Mean joint distance of poses `a` and `b` (broadcast over leading axes).

  Args:
    a, b: (..., 16, 2) joints in any pixels (each normalised on its own).

  Returns:
    (...) distances in torso lengths, the smaller over b's two labellings.
  """
  na, nb = normalise(a), normalise(b)
  direct = np.linalg.norm(na - nb, axis=-1).mean(axis=-1)
  swapped = np.linalg.norm(na - nb[..., SWAP, :], axis=-1).mean(axis=-1)
  return np.minimum(direct, swapped)


def choose(read, candidates) -> np.ndarray:
  """The candidate nearest to the joints a reader read.

  Args:
    read: (..., 16, 2) joints the reader found on the phosphene image.
    candidates: (..., C, 16, 2) the candidate poses of each trial.

  Returns:
    (...) int indices into the candidates (ties: the first).
  """
  read = np.asarray(read)[..., None, :, :]
  return np.argmin(pose_distance(read, candidates), axis=-1)
