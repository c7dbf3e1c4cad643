"""The synthetic generator: deterministic, shaped as documented, with signal."""

from __future__ import annotations

import numpy as np
import pytest

from metarec_jax.data import SyntheticSpec, make_split, make_synthetic
from tests.conftest import TINY_SYNTHETIC


def test_same_seed_same_data_other_seed_other_data():
  a = make_synthetic(SyntheticSpec(**TINY_SYNTHETIC))
  b = make_synthetic(SyntheticSpec(**TINY_SYNTHETIC))
  c = make_synthetic(SyntheticSpec(**{**TINY_SYNTHETIC, "seed": 1}))
  np.testing.assert_array_equal(a.interactions.rating, b.interactions.rating)
  np.testing.assert_array_equal(a.users.columns["age"], b.users.columns["age"])
  assert not np.array_equal(a.interactions.rating[:200], c.interactions.rating[:200])


def test_shapes_fields_and_rating_scale(tiny_data):
  d = tiny_data
  assert [s.kind for s in d.users.specs] == ["categorical"] * 4
  assert [s.kind for s in d.items.specs] == ["categorical", "categorical", "multi"]
  tags = d.items.columns["tags"]
  assert tags.shape == (d.num_items, 3) and (tags[:, 0] > 0).all()
  assert set(np.unique(d.interactions.rating)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
  counts = np.bincount(d.interactions.user, minlength=d.num_users)
  assert counts.min() >= 2 * TINY_SYNTHETIC["min_ratings"] and counts.max() <= 2 * TINY_SYNTHETIC["max_ratings"]
  pairs = d.interactions.user.astype(np.int64) * d.num_items + d.interactions.item
  assert len(np.unique(pairs)) == len(pairs), "duplicate (user, item) pairs"


def test_ratings_follow_the_ground_truth(tiny_data):
  d, ex = tiny_data, tiny_data.extras
  u, i = d.interactions.user, d.interactions.item
  signal = ex["user_bias"][u] + ex["item_bias"][i] + np.einsum(
      "nd,nd->n", ex["user_pref"][u], ex["item_vec"][i]) / np.sqrt(ex["user_pref"].shape[1])
  assert np.corrcoef(signal, d.interactions.rating)[0, 1] > 0.7
  # The individual part of the preferences is invisible in the features:
  # users with identical features still differ.
  cols = np.stack([d.users.columns[s.name] for s in d.users.specs], 1)
  _, inverse, counts = np.unique(cols, axis=0, return_inverse=True, return_counts=True)
  twins = np.flatnonzero(counts[inverse.ravel()] > 1)
  if len(twins) >= 2:
    same = twins[inverse.ravel()[twins] == inverse.ravel()[twins[0]]]
    assert np.abs(ex["user_pref"][same[0]] - ex["user_pref"][same[1]]).sum() > 0


def test_cold_flags_split_keeps_cold_out_of_training(tiny_data):
  split = make_split(tiny_data, "cold_flags", 0)
  train_users = set(split.train.user.tolist())
  assert not train_users & set(np.flatnonzero(tiny_data.user_is_cold).tolist())
  assert not tiny_data.item_is_cold[split.train.item].any()
  assert not train_users & set(split.valid.user.tolist())
  assert not train_users & set(split.tests["warm"].user.tolist())
  assert tiny_data.user_is_cold[split.tests["user_cold"].user].all()
  assert tiny_data.item_is_cold[split.tests["item_cold"].item].all()
  assert tiny_data.item_is_cold[split.tests["user_item_cold"].item].all()
  assert tiny_data.user_is_cold[split.tests["user_item_cold"].user].all()
  other = make_split(tiny_data, "cold_flags", 1)
  assert set(other.valid.user.tolist()) != set(split.valid.user.tolist())


def test_bad_spec_is_rejected():
  with pytest.raises(ValueError, match="feature_share"):
    make_synthetic(SyntheticSpec(feature_share=1.5))
  with pytest.raises(KeyError, match="unknown protocol"):
    make_split(make_synthetic(SyntheticSpec(**TINY_SYNTHETIC)), "nope", 0)
