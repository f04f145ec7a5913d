"""Tests of the host input pipeline on the tiny synthetic dataset."""

import json

import numpy as np
import pytest

from triplet_pose import config as config_lib
from triplet_pose.data import pipeline

NUM_TRAIN, NUM_VALID = 32, 16  # synthetic_figures/tiny


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp("tfds")
  config = _config(str(path))
  pipeline.create_tfds_iterator(config, split="train", batch_size=1, seed=0, shuffle=False,
                                repeat=False).close()  # builds it
  return str(path)


def _config(data_dir, **overrides):
  c = config_lib.input_config()
  c.name = "synthetic_figures/tiny"
  c.data_dir = data_dir
  for k, v in overrides.items():
    setattr(c, k, v)
  return c


def _iterator(data_dir, *, split="train", batch_size=5, seed=0, shuffle=True, repeat=True, **kw):
  config = _config(data_dir, **{k: kw.pop(k) for k in list(kw) if k in config_lib.input_config()})
  return pipeline.create_tfds_iterator(config, split=split, batch_size=batch_size, seed=seed,
                                       shuffle=shuffle, repeat=repeat, **kw)


def _names(batches):
  return [n for b in batches for n, v in zip(b["image_name"], b["valid"]) if v]


def test_batch_shapes_and_dtypes(data_dir):
  it = _iterator(data_dir, batch_size=3)
  batch = next(it)
  expected = {
      "image": ((3, 256, 256, 3), np.uint8), "joints": ((3, 16, 2), np.float32),
      "joints_visible": ((3, 16), np.float32), "contour": ((3, 26, 2), np.float32),
      "contour_visible": ((3, 26), np.float32), "head_size": ((3,), np.float32),
      "crop_to_original": ((3, 2, 3), np.float32), "person_index": ((3,), np.int32),
      "valid": ((3,), np.bool_), "image_name": ((3,), object),
  }
  assert {k: (v.shape, v.dtype) for k, v in batch.items()} == expected
  assert batch["valid"].all()
  assert it.num_examples == NUM_TRAIN and it.batches_per_epoch == 11
  it.close()


def test_epochs_are_permutations_that_differ(data_dir):
  it = _iterator(data_dir, batch_size=4)
  names = _names([next(it) for _ in range(2 * NUM_TRAIN // 4)])
  first, second = names[:NUM_TRAIN], names[NUM_TRAIN:]
  assert len(set(first)) == len(set(second)) == NUM_TRAIN
  assert first != second
  unshuffled = _names([next(_iterator(data_dir, batch_size=NUM_TRAIN, shuffle=False))])
  assert sorted(first) == sorted(unshuffled) and first != unshuffled
  it.close()


def test_same_seed_same_batches_other_seed_other_order(data_dir):
  a = _names([next(_iterator(data_dir, seed=1)) for _ in range(1)])
  b = _names([next(_iterator(data_dir, seed=1)) for _ in range(1)])
  c = _names([next(_iterator(data_dir, seed=2)) for _ in range(1)])
  assert a == b and a != c


def test_resume_is_exact_and_state_is_json(data_dir):
  it = _iterator(data_dir, batch_size=5)
  for _ in range(9):  # crosses an epoch boundary (32 examples)
    next(it)
  state = json.loads(json.dumps(it.get_state()))
  expected = [next(it) for _ in range(3)]
  resumed = _iterator(data_dir, batch_size=5)
  resumed.set_state(state)
  for want in expected:
    got = next(resumed)
    for key in want:
      np.testing.assert_array_equal(got[key], want[key])
  # Rewinding a running iterator works too.
  it.set_state(state)
  np.testing.assert_array_equal(next(it)["image"], expected[0]["image"])
  with pytest.raises(ValueError, match="batch_size"):
    _iterator(data_dir, batch_size=4).set_state(state)
  it.close()
  resumed.close()


def test_evaluation_pads_the_last_batch(data_dir):
  it = _iterator(data_dir, split="validation", batch_size=5, shuffle=False, repeat=False)
  batches = list(it)
  assert len(batches) == it.batches_per_epoch == 4
  assert [int(b["valid"].sum()) for b in batches] == [5, 5, 5, 1]
  assert all(b["image"].shape[0] == 5 for b in batches)
  names = _names(batches)
  assert len(names) == len(set(names)) == NUM_VALID
  with pytest.raises(StopIteration):
    next(it)


def test_processes_share_the_split(data_dir):
  shards = [list(_iterator(data_dir, split="validation", batch_size=2, shuffle=True, repeat=False,
                           process_index=i, process_count=3)) for i in range(3)]
  assert len({len(s) for s in shards}) == 1  # every process yields as many batches
  names = [_names(s) for s in shards]
  assert sum(len(n) for n in names) == NUM_VALID
  assert len(set().union(*map(set, names))) == NUM_VALID
  train = [next(_iterator(data_dir, batch_size=4, process_index=i, process_count=2))
           for i in range(2)]
  assert not set(_names(train[:1])) & set(_names(train[1:]))


def test_thesis_sampling_draws_a_new_subset_every_epoch(data_dir):
  it = _iterator(data_dir, batch_size=5, thesis_sampling=True, thesis_train_examples=10)
  assert it.num_examples == 10 and it.batches_per_epoch == 2
  names = _names([next(it) for _ in range(4)])
  first, second = names[:10], names[10:]
  assert len(set(first)) == len(set(second)) == 10 and set(first) != set(second)
  ev = _iterator(data_dir, split="validation", batch_size=4, shuffle=False, repeat=False,
                 thesis_sampling=True, thesis_eval_examples=6)
  assert len(_names(list(ev))) == 6
  it.close()


def test_image_size_resizes_crops_and_keypoints(data_dir):
  full = next(_iterator(data_dir, batch_size=2, shuffle=False))
  small = next(_iterator(data_dir, batch_size=2, shuffle=False, image_size=64))
  assert small["image"].shape == (2, 64, 64, 3)
  np.testing.assert_allclose(small["joints"], (full["joints"] + 0.5) / 4 - 0.5, atol=1e-4)
  np.testing.assert_allclose(small["head_size"], full["head_size"] / 4, rtol=1e-5)
  np.testing.assert_allclose(small["crop_to_original"][:, :, :2],
                             full["crop_to_original"][:, :, :2] * 4)


def test_custom_synthetic_size_by_name(tmp_path):
  config = _config(str(tmp_path), name="synthetic_figures/n6_3_s2")
  it = pipeline.create_tfds_iterator(config, split="validation", batch_size=4, seed=0,
                                     shuffle=False, repeat=False)
  assert it.num_examples == 3
  assert all(n.startswith(b"synthetic_2_1_") for n in _names(list(it)))


def test_bad_names_and_missing_manual_dir(tmp_path):
  with pytest.raises(ValueError, match="expected 'synthetic_figures"):
    pipeline.create_tfds_iterator(_config(str(tmp_path), name="imagenet"), split="train",
                                  batch_size=1, seed=0, shuffle=False, repeat=False)
  config = _config(str(tmp_path), name="mpii_trb/joints", manual_dir=str(tmp_path / "absent"))
  with pytest.raises(FileNotFoundError, match="images/"):
    pipeline.create_tfds_iterator(config, split="train", batch_size=1, seed=0, shuffle=False,
                                  repeat=False)


def test_process_shares_make_up_the_one_process_batch(data_dir):
  """Batch k of every process together is batch k of one process (training
  and evaluation), so a multi-process job trains on the same global batches."""
  for split, kw in (("train", dict(shuffle=True, repeat=True)),
                    ("validation", dict(shuffle=False, repeat=False))):
    one = _iterator(data_dir, split=split, batch_size=6, **kw)
    shares = [_iterator(data_dir, split=split, batch_size=3, process_index=i, process_count=2,
                        **kw) for i in range(2)]
    for _ in range(one.batches_per_epoch + 1 if kw["repeat"] else one.batches_per_epoch):
      whole = next(one)
      parts = [next(s) for s in shares]
      want = sorted(_names([whole]))
      got = sorted(_names(parts))
      assert got == want
    for it in (one, *shares):
      it.close()


def test_decoded_cache_gives_the_same_batches_and_decodes_each_example_once(
    data_dir, monkeypatch):
  decoded = []
  real_decode = pipeline.decode_record

  def counting_decode(record, **kw):
    decoded.append(record["image_name"])
    return real_decode(record, **kw)

  monkeypatch.setattr(pipeline, "decode_record", counting_decode)
  # 32 tiny 256 px examples: 6 MiB decoded.
  cached = _iterator(data_dir, batch_size=5, cache_decoded_mb=7)
  assert cached.caches_decoded
  assert not _iterator(data_dir, batch_size=5, cache_decoded_mb=5).caches_decoded
  assert not _iterator(data_dir, repeat=False, cache_decoded_mb=7).caches_decoded
  batches = 3 * NUM_TRAIN // 5  # three epochs
  got = [next(cached) for _ in range(batches)]
  # Resuming a cached iterator mid-epoch gives the same batches.
  state = cached.get_state()
  expected = next(cached)
  cached.set_state(state)
  np.testing.assert_array_equal(next(cached)["image"], expected["image"])
  cached.close()
  # Each example decoded once, however far the loading thread ran ahead.
  assert sorted(decoded) == sorted(set(decoded)) and len(decoded) == NUM_TRAIN
  plain = _iterator(data_dir, batch_size=5, cache_decoded_mb=0)
  for a in got:
    b = next(plain)
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)
  plain.close()
