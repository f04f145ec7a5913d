"""Decoding and grouping of associative-embedding maps, and the tag losses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from triplet_pose import grouping
from triplet_pose import heatmaps
from triplet_pose import keypoints as kp
from triplet_pose import metrics
from triplet_pose.models import associative_embedding as ae

K = 16


def _scene(seed=0, persons=3, size=64):
  """Persons (P, K, 2) in a size x size image, well apart."""
  rng = np.random.default_rng(seed)
  centres = np.array([[12, 14], [44, 18], [28, 46]])[:persons]
  return centres[:, None, :] + rng.uniform(-8, 8, (persons, K, 2))


def _oracle_maps(joints, size=64, heatmap_size=16, tag_values=None):
  """Heatmaps of the true joints and tag maps holding each person's tag around them."""
  p = len(joints)
  tag_values = np.arange(p) * 3.0 if tag_values is None else tag_values
  coords = heatmaps.rescale_coordinates(jnp.asarray(joints, jnp.float32), size, heatmap_size)
  maps = np.asarray(heatmaps.render(coords, height=heatmap_size, sigma=1.0))  # (P, h, w, K)
  tags = np.zeros((heatmap_size, heatmap_size, K))
  owner = maps.argmax(0)
  tags = np.asarray(tag_values)[owner]
  return maps.max(0), tags


def test_decode_finds_peaks_suppresses_neighbours_and_shifts():
  maps = np.zeros((1, 8, 8, K), np.float32)
  maps[0, 2, 3, 0], maps[0, 2, 4, 0] = 1.0, 0.6  # a peak and its lower neighbour
  maps[0, 6, 6, 0] = 0.8
  tags = np.zeros_like(maps)
  tags[0, 2, 3, 0], tags[0, 6, 6, 0] = 7.0, -2.0
  found = grouping.decode(jnp.asarray(maps), jnp.asarray(tags), top_k=3)
  np.testing.assert_allclose(found["score"][0, 0], [1.0, 0.8, 0.0])
  np.testing.assert_allclose(found["xy"][0, 0, :2], [[3.25, 2.0], [6.0, 6.0]])
  np.testing.assert_allclose(found["tag"][0, 0, :2], [7.0, -2.0])
  # Two numbers per tag: each candidate keeps the pair of its own cell.
  vector = np.stack([tags, np.arange(tags.size, dtype=np.float32).reshape(tags.shape)], -1)
  found = grouping.decode(jnp.asarray(maps), jnp.asarray(vector), top_k=3)
  np.testing.assert_allclose(found["tag"][0, 0, :2], [[7.0, (2 * 8 + 3) * K], [-2.0, 6 * 9 * K]])


def test_hungarian_assignment_beats_greedy_by_score():
  xy = np.zeros((K, 2, 2))
  score = np.zeros((K, 2))
  tag = np.zeros((K, 2))
  head, neck = grouping.GROUPING_ORDER[:2]
  # The head top starts two persons with tags 0 and 3.
  score[head] = (0.9, 0.9)
  tag[head] = (0.0, 3.0)
  xy[head] = ((1, 1), (9, 9))
  # Neck candidates: the stronger (tag 1.4) is a little closer to person 0,
  # the weaker (tag 0.2) is person 0's. Greedy by score would give the
  # stronger one to person 0 and leave the weaker one a person of its own.
  score[neck] = (0.8, 0.5)
  tag[neck] = (1.4, 0.2)
  xy[neck] = ((8, 8), (2, 2))
  options = grouping.GroupingOptions(tag_threshold=2.5, min_joints=1)
  persons, person_tags = grouping.group(xy, score, tag, options=options)
  assert len(persons) == 2
  np.testing.assert_allclose(persons[0, neck], [2, 2, 0.5])
  np.testing.assert_allclose(persons[1, neck], [8, 8, 0.8])
  np.testing.assert_allclose(person_tags, [0.1, 2.2])


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_equal_rounded_distances_go_to_the_closer_tag(order):
  """Candidates of one score whose tags lie within the same rounded distance
  of two persons join the closer one, in either candidate order (the
  grouping ceiling's candidates all score 1)."""
  order = list(order)
  xy = np.zeros((K, 2, 2))
  score = np.zeros((K, 2))
  tag = np.zeros((K, 2))
  head, neck = grouping.GROUPING_ORDER[:2]
  score[head], tag[head] = (1.0, 1.0), (0.0, 0.4)
  xy[head] = ((1, 1), (9, 9))
  # Both necks are within 0.5 of both persons: rounded, every cost ties.
  score[neck], tag[neck] = (1.0, 1.0), np.array([0.35, 0.05])[order]
  xy[neck] = np.array([(9, 10), (1, 2)])[order]
  persons, person_tags = grouping.group(
      xy, score, tag, options=grouping.GroupingOptions(min_joints=1))
  np.testing.assert_allclose(persons[:, neck, :2], [[1, 2], [9, 10]])
  np.testing.assert_allclose(person_tags, [0.025, 0.375])


def test_far_tags_start_new_persons_and_weak_persons_are_dropped():
  xy = np.zeros((K, 1, 2))
  score = np.full((K, 1), 0.9)
  tag = np.zeros((K, 1))
  tag[grouping.GROUPING_ORDER[-1]] = 10.0  # the last joint's tag matches nobody
  persons, _ = grouping.group(xy, score, tag,
                              options=grouping.GroupingOptions(min_joints=1))
  assert len(persons) == 2 and np.isfinite(persons[1, :, 2]).sum() == 1
  persons, _ = grouping.group(xy, score, tag, options=grouping.GroupingOptions(min_joints=2))
  assert len(persons) == 1


def test_refine_picks_the_peak_of_the_persons_tag():
  maps = np.zeros((8, 8, K))
  tags = np.zeros((8, 8, K))
  maps[1, 1, 5], tags[1, 1, 5] = 0.9, 0.0  # someone else's ankle, stronger
  maps[6, 5, 5], tags[6, 5, 5] = 0.4, 5.0  # this person's
  persons = np.full((1, K, 3), np.nan)
  persons[0, 0] = (3, 3, 1.0)
  out = grouping.refine(persons, np.array([5.0]), maps, tags)
  np.testing.assert_allclose(out[0, 5], [5, 6, 0.4])
  np.testing.assert_allclose(out[0, 0], [3, 3, 1.0])  # found joints stay


def test_scores_follow_the_share_of_the_person_found():
  persons = np.full((2, K, 3), 0.8)
  found = np.ones((2, K), bool)
  found[1, 4:] = False  # a piece: 4 joints found, the rest refined
  out = grouping.score_by_completeness(persons, found)
  np.testing.assert_allclose(out[0, :, 2], 0.8)  # a complete person keeps its scores
  np.testing.assert_allclose(out[1, :4, 2], 0.8 * 4 / K)
  np.testing.assert_allclose(out[1, 4:, 2], 0.5 * 0.8 * 4 / K)  # refined: half
  np.testing.assert_array_equal(out[..., :2], persons[..., :2])


def test_a_piece_of_a_person_ranks_below_the_complete_persons():
  """Tags that split one joint off each person: with completeness scores the
  one-joint pieces rank last, so the ceiling loses only their joints."""
  joints = _scene(1)
  visible = np.ones((3, K), bool)
  _, tags = _oracle_maps(joints)
  odd = tags.copy()
  head = grouping.GROUPING_ORDER[0]
  odd[..., head] = tags[..., head] + 20.0  # each head top starts a piece of its own
  ceiling = grouping.group_ground_truth(joints, visible, odd, image_size=64)
  assert len(ceiling) == 6
  pieces = np.isfinite(ceiling[..., 2]).sum(-1) == 1
  assert ceiling[pieces, head, 2].max() < np.nanmin(ceiling[~pieces][..., 2])
  truth = [(joints, visible, np.full(3, 4.0))]
  ap = metrics.multi_person_ap([ceiling], truth)["ap"]
  others = [j for j in range(K) if j != head]
  np.testing.assert_allclose(ap[others], 100.0)


def test_oracle_maps_give_perfect_ap_and_count():
  preds, truth = [], []
  for seed in range(3):
    joints = _scene(seed)
    maps, tags = _oracle_maps(joints)
    (persons,) = grouping.predict_persons(maps[None], tags[None], image_size=64)
    preds.append(persons)
    truth.append((joints, np.ones((3, K), bool), np.full(3, 4.0)))
    assert len(persons) == 3
  assert metrics.multi_person_ap(preds, truth)["map"] == 100.0


def test_grouping_ceiling_follows_the_tags():
  joints = _scene(1)
  visible = np.ones((3, K), bool)
  _, tags = _oracle_maps(joints)
  truth = [(joints, visible, np.full(3, 4.0))]
  good = grouping.group_ground_truth(joints, visible, tags, image_size=64)
  assert len(good) == 3 and metrics.multi_person_ap([good], truth)["map"] == 100.0
  # Tags that give every person's limbs the next person's tag: limbs go astray.
  limbs = list(grouping.GROUPING_ORDER[8:])
  bad = tags.copy()
  bad[..., limbs] = (tags[..., limbs] + 3.0) % 9.0
  wrong = grouping.group_ground_truth(joints, visible, bad, image_size=64)
  assert metrics.multi_person_ap([wrong], truth)["map"] < 60


def test_tag_losses_by_hand():
  image = jnp.zeros((1, 16, 16, 3))
  joints = jnp.zeros((1, 3, K, 2))
  joints = joints.at[0, 0].set(1.5).at[0, 1].set(9.5)  # cells (0,0) and (2,2) of a 4x4 map
  visible = jnp.ones((1, 3, K)).at[0, 0, 1:].set(0.0)  # person 0: joint 0 only
  batch = {"image": image, "joints": joints, "joints_visible": visible,
           "persons_valid": jnp.array([[True, True, False]])}
  tags = np.zeros((1, 1, 4, 4, K), np.float32)
  tags[0, 0, 0, 0, 0] = 1.0
  tags[0, 0, 2, 2, :] = 3.0
  tags[0, 0, 2, 2, 1] = 5.0  # person 1: fifteen joints at 3, one at 5: mean 3.125
  pull, push = ae.tag_losses(jnp.asarray(tags), batch)
  mean = (15 * 3 + 5) / 16
  expected_pull = (0.0 + (15 * (3 - mean) ** 2 + (5 - mean) ** 2) / 16) / 2
  assert float(pull[0, 0]) == pytest.approx(expected_pull, rel=1e-5)
  assert float(push[0, 0]) == pytest.approx(np.exp(-0.5 * (mean - 1.0) ** 2), rel=1e-5)
  _, push = ae.tag_losses(jnp.asarray(tags), batch, push_kernel="laplace")
  assert float(push[0, 0]) == pytest.approx(np.exp(-(mean - 1.0)), rel=1e-5)
  with pytest.raises(ValueError, match="push_kernel"):
    ae.tag_losses(jnp.asarray(tags), batch, push_kernel="cauchy")


def test_tag_losses_of_vector_tags_by_hand():
  """Two persons whose 2-d tags differ by (3, 4): push exp(-5) (Laplace) and
  exp(-25 / 2) (Gaussian); one-dimensional tags equal their (..., K, 1) form."""
  image = jnp.zeros((1, 16, 16, 3))
  joints = jnp.zeros((1, 2, K, 2)).at[0, 0].set(1.5).at[0, 1].set(9.5)
  batch = {"image": image, "joints": joints, "joints_visible": jnp.ones((1, 2, K)),
           "persons_valid": jnp.array([[True, True]])}
  tags = np.zeros((1, 1, 4, 4, K, 2), np.float32)
  tags[0, 0, 2, 2] = (3.0, 4.0)
  tags[0, 0, 2, 2, 0] = (3.0, 6.0)  # one joint 2 away: person 1's mean (3, 4.125)
  pull, push = ae.tag_losses(jnp.asarray(tags), batch, push_kernel="laplace")
  mean = np.array([3.0, 4.0 + 2.0 / 16])
  spread = ((tags[0, 0, 2, 2] - mean) ** 2).sum(-1).mean()
  assert float(pull[0, 0]) == pytest.approx(spread / 2, rel=1e-5)
  assert float(push[0, 0]) == pytest.approx(np.exp(-np.linalg.norm(mean)), rel=1e-5)
  _, push = ae.tag_losses(jnp.asarray(tags), batch)
  assert float(push[0, 0]) == pytest.approx(np.exp(-0.5 * (mean ** 2).sum()), rel=1e-5)
  one = jnp.asarray(tags[..., 1])
  for kernel in ae.PUSH_KERNELS:
    np.testing.assert_array_equal(ae.tag_losses(one, batch, push_kernel=kernel),
                                  ae.tag_losses(one[..., None], batch, push_kernel=kernel))
  grads = jax.grad(lambda t: sum(x.sum() for x in ae.tag_losses(t, batch, push_kernel="laplace")))(
      jnp.zeros_like(jnp.asarray(tags)))  # equal tags: the distance's gradient stays finite
  assert np.isfinite(np.asarray(grads)).all()
  with pytest.raises(ValueError, match="axes"):
    ae.tag_losses(jnp.zeros((1, 1, 4, 4, K, 2, 2)), batch)


def test_vector_tags_keep_apart_persons_whose_first_tags_collide():
  """Three persons with the same first tag component: one-dimensional tags
  mix them up, a second component keeps them apart, through decoding,
  grouping and refinement."""
  joints = _scene(2)
  maps, first = _oracle_maps(joints, tag_values=np.zeros(3))
  _, second = _oracle_maps(joints)  # 0, 3, 6
  vector = np.stack([first, second], axis=-1)  # (h, w, K, 2)
  truth = [(joints, np.ones((3, K), bool), np.full(3, 4.0))]
  found = grouping.decode(jnp.asarray(maps[None]), jnp.asarray(vector[None]), top_k=4)
  assert found["tag"].shape == (1, K, 4, 2)
  (apart,) = grouping.predict_persons(maps[None], vector[None], image_size=64)
  (merged,) = grouping.predict_persons(maps[None], first[None], image_size=64)
  assert len(apart) == 3 and metrics.multi_person_ap([apart], truth)["map"] == 100.0
  # One-dimensional: three persons all of tag 0, whose joints the assignment mixes.
  assert metrics.multi_person_ap([merged], truth)["map"] < 60
  ceiling = grouping.group_ground_truth(joints, np.ones((3, K), bool), vector, image_size=64)
  assert metrics.multi_person_ap([ceiling], truth)["map"] == 100.0


def test_refine_measures_vector_tag_distance():
  maps = np.zeros((8, 8, K))
  tags = np.zeros((8, 8, K, 2))
  maps[1, 1, 5], tags[1, 1, 5] = 0.9, (5.0, 0.0)  # same first component, 5 away in the second
  maps[6, 5, 5], tags[6, 5, 5] = 0.4, (5.0, 5.0)
  persons = np.full((1, K, 3), np.nan)
  persons[0, 0] = (3, 3, 1.0)
  out = grouping.refine(persons, np.array([[5.0, 5.0]]), maps, tags)
  np.testing.assert_allclose(out[0, 5], [5, 6, 0.4])


def test_non_finite_tags_end_in_one_line_naming_the_joint():
  xy = np.zeros((16, 2, 2))
  score = np.full((16, 2), 0.9)
  tag = np.zeros((16, 2))
  tag[kp.JOINT_INDEX["l_wrist"], 1] = np.nan
  with pytest.raises(FloatingPointError, match="tags of l_wrist are not finite"):
    grouping.group(xy, score, tag, options=grouping.GroupingOptions(min_joints=1))
