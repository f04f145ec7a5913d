"""Tags to persons: decoding an associative-embedding model's maps into people.

1. `decode` (jitted, batched): peaks of every joint's heatmap by non-maximum
   suppression (a peak is the maximum of its neighbourhood), the `top_k`
   strongest per joint, each with its tag and a quarter-cell shift toward
   the larger neighbour (Newell et al.'s sub-pixel step, as
   `heatmaps.decode` does for a single peak).
   Tags are one number per joint, or D numbers (`tags.dim`); distances
   between tags are Euclidean, so one-dimensional tags give |a - b|.
2. `group` (host, per image): joints join persons in a fixed order
   (`GROUPING_ORDER`: head, shoulders, hips, then the limbs outward). At
   each joint the candidates above the detection threshold are assigned to
   the persons found so far by Hungarian assignment
   (`scipy.optimize.linear_sum_assignment`) on tag distance, rounded so
   that among equally close persons the higher score wins (Newell et al.),
   and where rounded distance and score are equal the closer tag wins (so
   the grouping ceiling, whose candidates all score 1, uses the tags'
   decimals too); a candidate whose tag is farther than `tag_threshold`
   from every person's mean tag starts a new person.
3. `refine`: a person's missing joints are looked for over the whole map,
   at the cell that best trades heatmap value for tag distance to the
   person's mean tag (Newell et al.).
4. `score_by_completeness`: a joint's score, which ranks it in the AP, is
   its heatmap value times the share of the person's joints that step 2
   found, a joint refined in step 3 counting at half its value: a piece
   of a person, or a joint nobody found, ranks below the joints of
   complete persons.

Persons come out as (P, K, 3) arrays of x, y, score in input pixels (NaN
where a joint was not found): `metrics.multi_person_ap`'s predictions.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import linear_sum_assignment

from triplet_pose import heatmaps as heatmaps_lib
from triplet_pose import keypoints as kp
from triplet_pose.models.associative_embedding import with_embedding_axis

_J = kp.JOINT_INDEX
GROUPING_ORDER: tuple[int, ...] = tuple(_J[n] for n in (
    "head_top", "upper_neck", "r_shoulder", "l_shoulder", "thorax", "r_hip", "l_hip", "pelvis",
    "r_elbow", "l_elbow", "r_knee", "l_knee", "r_wrist", "l_wrist", "r_ankle", "l_ankle"))
assert sorted(GROUPING_ORDER) == list(range(kp.NUM_JOINTS))
_NEW_PERSON_COST = 1e10
# Weight of the exact tag distance in the assignment cost, beside 100 x the
# rounded distance minus the score: small enough to change only ties. With
# the trained scenes model it lifted the grouping ceiling from 86.5 to 90.5
# and left the mAP as it was (docs/multiperson.md).
_TIE_BREAK = 0.01
# What a refined joint's heatmap value counts for in its score
# (`score_by_completeness`); with the person's found share, it lifted the
# recipe's held-out mAP from 78.4 to 79.2 (docs/multiperson.md).
_REFINED_WEIGHT = 0.5


@dataclasses.dataclass(frozen=True)
class GroupingOptions:
  """How an image's maps are taken and become persons.

  Attributes:
    top_k: candidates per joint (at least the most persons expected).
    nms_kernel: side of the neighbourhood a peak must be the maximum of.
    detection_threshold: heatmap value a candidate needs.
    tag_threshold: largest tag distance at which a candidate joins a person.
    min_joints: persons with fewer detected joints (before refinement) are
      dropped.
    refine: fill missing joints (`refine`).
    scales: input scales whose maps are combined (Newell et al.'s
      multi-scale test, `inference.predict_scene_maps`); the evaluation and
      prediction of a workdir (`prediction.scenes`, `launch.predict`) use
      them, training-time evaluation decodes the plain maps.
    map_scale: side of the combined maps, in sides of the plain maps.
  """
  top_k: int = 8
  nms_kernel: int = 3
  detection_threshold: float = 0.2
  tag_threshold: float = 1.0
  min_joints: int = 4
  refine: bool = True
  scales: tuple[float, ...] = (1.0,)
  map_scale: float = 1.0

  def __post_init__(self):
    # A config read back from JSON holds a list; jit needs it hashable.
    object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
    if not self.scales or min(self.scales) <= 0 or self.map_scale <= 0:
      raise ValueError(f"grouping: scales must be one or more positive numbers and map_scale "
                       f"positive, got scales={self.scales}, map_scale={self.map_scale}")
    problems = [f"{name} {rule}, got {value!r}" for name, value, ok, rule in (
        ("top_k", self.top_k, self.top_k >= 1, "must be at least 1"),
        ("nms_kernel", self.nms_kernel, self.nms_kernel >= 1 and self.nms_kernel % 2 == 1,
         "must be odd and positive"),
        # Suppressed cells score 0: a negative threshold would make them joints.
        ("detection_threshold", self.detection_threshold, self.detection_threshold >= 0,
         "must be at least 0"),
        ("tag_threshold", self.tag_threshold, self.tag_threshold > 0, "must be positive"),
        ("min_joints", self.min_joints, 1 <= self.min_joints <= kp.NUM_JOINTS,
         f"must be in 1..{kp.NUM_JOINTS}"),
    ) if not ok]
    if problems:
      raise ValueError("grouping: " + "; ".join(problems))

  @classmethod
  def from_config(cls, config, **chosen) -> GroupingOptions:
    """An experiment config's `grouping` section (any of the fields; the
    defaults without one), with `chosen` fields replaced."""
    return cls(**{**dict(config.get("grouping", {})), **chosen})


@functools.partial(jax.jit, static_argnames=("top_k", "nms_kernel"))
def decode(heatmaps: jax.Array, tags: jax.Array, *, top_k: int, nms_kernel: int = 3
           ) -> dict[str, jax.Array]:
  """Candidates of every joint: the `top_k` strongest local maxima.

  Args:
    heatmaps: (B, h, w, K).
    tags: (B, h, w, K), or (B, h, w, K, D).
    top_k: candidates per joint.
    nms_kernel: odd neighbourhood side of the non-maximum suppression.

  Returns:
    {'xy': (B, K, top_k, 2) heatmap pixels, 'score': (B, K, top_k),
     'tag': (B, K, top_k), or (B, K, top_k, D)}; suppressed cells have score 0.
  """
  one_dimensional = tags.ndim == 4
  tags = with_embedding_axis(tags, 4)
  b, h, w, k = heatmaps.shape
  pooled = jax.lax.reduce_window(heatmaps, -jnp.inf, jax.lax.max, (1, nms_kernel, nms_kernel, 1),
                                 (1, 1, 1, 1), "SAME")
  peaks = jnp.where(heatmaps == pooled, heatmaps, 0.0)
  flat_peaks = jnp.moveaxis(peaks.reshape(b, h * w, k), -1, -2)  # (B, K, hw)
  flat_maps = jnp.moveaxis(heatmaps.reshape(b, h * w, k), -1, -2)
  flat_tags = jnp.moveaxis(tags.reshape(b, h * w, k, -1), 1, 2)  # (B, K, hw, D)
  score, index = jax.lax.top_k(flat_peaks, top_k)
  xy = heatmaps_lib.cell_coordinates(flat_maps, index, width=w).astype(jnp.float32)
  tag = jnp.take_along_axis(flat_tags, index[..., None], axis=-2)  # (B, K, top_k, D)
  return {"xy": xy, "score": score, "tag": tag[..., 0] if one_dimensional else tag}


def group(xy: np.ndarray, score: np.ndarray, tag: np.ndarray, *,
          options: GroupingOptions = GroupingOptions()) -> tuple[np.ndarray, np.ndarray]:
  """Groups one image's candidates into persons.

  Args:
    xy: (K, M, 2) candidate positions (any pixels).
    score: (K, M); candidates at or below `options.detection_threshold` are
      left out.
    tag: (K, M), or (K, M, D).
    options: thresholds.

  Returns:
    persons: (P, K, 3) x, y, score; NaN where the person has no such joint.
    person_tags: (P,) each person's mean tag, or (P, D).
  """
  one_dimensional = np.ndim(tag) == 2
  tag = with_embedding_axis(np.asarray(tag, np.float64), 2)
  k, d = xy.shape[0], tag.shape[-1]
  joints: list[np.ndarray] = []  # per person (K, 3)
  tags: list[list[np.ndarray]] = []
  for j in GROUPING_ORDER:
    keep = np.flatnonzero(score[j] > options.detection_threshold)
    if keep.size == 0:
      continue
    found = np.concatenate([xy[j, keep], score[j, keep, None]], axis=-1)
    c_tags = tag[j, keep]
    if not np.isfinite(c_tags).all():
      raise FloatingPointError(f"grouping: the tags of {kp.JOINT_NAMES[j]} are not finite "
                               f"(NaN or inf): the model's outputs are broken")
    assigned = np.full(keep.size, -1)
    if joints:
      means = np.stack([np.mean(t, axis=0) for t in tags])  # (P, D)
      distance = np.linalg.norm(c_tags[:, None] - means[None, :], axis=-1)  # (C, P)
      cost = np.round(distance) * 100.0 - found[:, 2:3] + _TIE_BREAK * distance
      # One extra column per candidate: starting a new person is possible
      # but never cheaper than a person within reach.
      padded = np.concatenate([cost, np.full((keep.size, keep.size), _NEW_PERSON_COST)], axis=1)
      rows, cols = linear_sum_assignment(padded)
      for r, c in zip(rows, cols):
        if c < len(joints) and distance[r, c] < options.tag_threshold:
          assigned[r] = c
    for r in range(keep.size):
      if assigned[r] < 0:
        joints.append(np.full((k, 3), np.nan))
        tags.append([])
        assigned[r] = len(joints) - 1
      joints[assigned[r]][j] = found[r]
      tags[assigned[r]].append(c_tags[r])
  counts = np.array([np.isfinite(p[:, 2]).sum() for p in joints], int)
  chosen = [i for i in range(len(joints)) if counts[i] >= options.min_joints]
  persons = np.stack([joints[i] for i in chosen]) if chosen else np.zeros((0, k, 3))
  means = np.array([np.mean(tags[i], axis=0) for i in chosen], np.float64).reshape(-1, d)
  return persons, means[:, 0] if one_dimensional else means


def refine(persons: np.ndarray, person_tags: np.ndarray, heatmaps: np.ndarray,
           tags: np.ndarray) -> np.ndarray:
  """Fills each person's missing joints from the whole map (heatmap pixels).

  The joint goes to the cell maximising heatmap value minus the rounded
  distance of its tag to the person's mean tag, with the quarter-cell shift
  of `decode`; its score is the heatmap value there. Found joints stay.

  Args:
    persons: (P, K, 3) in heatmap pixels (NaN: missing).
    person_tags: (P,), or (P, D).
    heatmaps, tags: (h, w, K) of the same image; tags (h, w, K, D) with
      (P, D) person tags.

  Returns:
    (P, K, 3).
  """
  persons = persons.copy()
  tags = with_embedding_axis(np.asarray(tags), 3)
  person_tags = np.asarray(person_tags, np.float64).reshape(len(persons), tags.shape[-1])
  h, w, _ = heatmaps.shape
  for p in range(len(persons)):
    missing = np.flatnonzero(~np.isfinite(persons[p, :, 2]))
    if missing.size == 0:
      continue
    fit = heatmaps[..., missing] - np.round(
        np.linalg.norm(tags[..., missing, :] - person_tags[p], axis=-1))
    cell = fit.reshape(h * w, -1).argmax(axis=0)  # (M,) per missing joint
    flat = heatmaps.reshape(h * w, -1)[:, missing].T  # (M, hw)
    persons[p, missing, :2] = heatmaps_lib.cell_coordinates(flat, cell[:, None], width=w)[:, 0]
    persons[p, missing, 2] = flat[np.arange(missing.size), cell]
  return persons


def score_by_completeness(persons: np.ndarray, found: np.ndarray) -> np.ndarray:
  """Persons (P, K, 3) with each joint's score times the share of the
  person's K joints in `found` (P, K); joints not in `found` (refined) score
  half their value first."""
  persons = np.array(persons, np.float64)
  found = np.asarray(found, bool)
  share = found.sum(-1, keepdims=True) / found.shape[-1]
  persons[..., 2] = np.where(found, 1.0, _REFINED_WEIGHT) * persons[..., 2] * share
  return persons


def image_persons(xy: np.ndarray, score: np.ndarray, tag: np.ndarray, heatmaps: np.ndarray,
                  tags: np.ndarray, *, options: GroupingOptions = GroupingOptions()
                  ) -> np.ndarray:
  """One image's persons (P, K, 3) in heatmap pixels: `group` its candidates
  (`decode`'s, of that image), `refine` (when `options.refine`) on its maps
  (h, w, K) and tags, `score_by_completeness`."""
  persons, person_tags = group(xy, score, tag, options=options)
  found = np.isfinite(persons[..., 2])
  if options.refine and len(persons):
    persons = refine(persons, person_tags, heatmaps, tags)
  return score_by_completeness(persons, found)


def predict_persons(heatmaps: np.ndarray, tags: np.ndarray, *, image_size: int,
                    options: GroupingOptions = GroupingOptions()) -> list[np.ndarray]:
  """Every image's persons (P, K, 3) in input pixels from last-stack maps
  (`image_persons`).

  Args:
    heatmaps: (B, h, w, K); tags: (B, h, w, K), or (B, h, w, K, D).
    image_size: side of the input image the maps cover.
    options: decoding and grouping settings.
  """
  found = jax.device_get(decode(jnp.asarray(heatmaps), jnp.asarray(tags), top_k=options.top_k,
                                nms_kernel=options.nms_kernel))
  heatmaps, tags = np.asarray(heatmaps), np.asarray(tags)
  size = heatmaps.shape[1]
  return [to_pixels(image_persons(found["xy"][i], found["score"][i], found["tag"][i],
                                  heatmaps[i], tags[i], options=options), size, image_size)
          for i in range(heatmaps.shape[0])]


def to_pixels(persons: np.ndarray, from_size: int, to_size: int) -> np.ndarray:
  """Persons (..., K, 3) from heatmap pixels to those of a `to_size` image."""
  xy = np.asarray(heatmaps_lib.rescale_coordinates(persons[..., :2], from_size, to_size))
  return np.concatenate([xy, persons[..., 2:]], axis=-1)


def group_ground_truth(joints: np.ndarray, visible: np.ndarray, tags: np.ndarray, *,
                       image_size: int, options: GroupingOptions = GroupingOptions()
                       ) -> np.ndarray:
  """The grouping ceiling of one image: its true joints grouped by predicted tags.

  Every annotated joint of every person becomes a candidate of score 1 with
  the tag under it; `group` then decides who it belongs to, and
  `score_by_completeness` scores the pieces as predicted persons are.

  Args:
    joints: (P, K, 2) in input pixels; visible: (P, K) annotated.
    tags: (h, w, K) predicted tag maps of the image, or (h, w, K, D).
    image_size: side of the input image.
    options: grouping thresholds (`top_k` is not used).

  Returns:
    (P', K, 3) persons in input pixels.
  """
  p, k, _ = joints.shape
  h, w = tags.shape[:2]
  coords = np.asarray(heatmaps_lib.rescale_coordinates(joints, image_size, h))
  ij = np.clip(np.round(coords).astype(int), 0, [w - 1, h - 1])
  shown = np.asarray(visible) > 0
  tags = with_embedding_axis(np.asarray(tags), 3)
  tag = np.moveaxis(tags[ij[..., 1], ij[..., 0], np.arange(k)], 0, 1)  # (K, P, D)
  score = np.where(shown, 1.0, 0.0).T
  xy = np.moveaxis(joints, 0, 1)
  # Candidates in a random order per joint: where costs tie exactly (persons
  # with equal tags) the assignment would otherwise follow the annotation's
  # person order, not the tags.
  rng = np.random.default_rng(0)
  order = np.stack([rng.permutation(p) for _ in range(k)])  # (K, P)
  tag, score = np.take_along_axis(tag, order[..., None], 1), np.take_along_axis(score, order, 1)
  xy = np.take_along_axis(xy, order[..., None], 1)
  options = dataclasses.replace(options, detection_threshold=0.5, min_joints=1)
  persons, _ = group(xy, score, tag, options=options)
  return score_by_completeness(persons, np.isfinite(persons[..., 2]))
