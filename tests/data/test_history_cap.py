"""data.history_cap: long users keep a seeded random subset of their ratings; short users are untouched."""

from __future__ import annotations

import numpy as np
import pytest

from metarec_jax import ConfigError, validate
from metarec_jax.data import build_taskset
from metarec_jax.data.interactions import Interactions
from metarec_jax.data.tasks import cap_histories
from tests.conftest import tiny_config

CAP = 6


@pytest.fixture(scope="module")
def ratings():
  """Users 0..29 with 2..31 ratings of distinct items, rating = item / 10, timestamps shuffled."""
  rng = np.random.default_rng(0)
  user = np.repeat(np.arange(30), np.arange(2, 32))
  item = np.concatenate([rng.choice(200, n, replace=False) for n in range(2, 32)])
  ts = rng.permutation(len(user)).astype(np.int64)
  return Interactions(user, item, (item / 10).astype(np.float32), ts)


def _rows(tasks):
  """user -> {item: rating} of a TaskSet."""
  return {int(u): dict(zip(tasks.items[t, :n].tolist(), tasks.ratings[t, :n].tolist()))
          for t, (u, n) in enumerate(zip(tasks.user, tasks.lengths))}


def test_capped_tasks_are_seeded_subsets_and_short_users_untouched(ratings):
  full = _rows(build_taskset(ratings))
  capped = build_taskset(ratings, cap=CAP, seed=3)
  assert capped.items.shape == (30, CAP) and (capped.lengths <= CAP).all()
  rows = _rows(capped)
  for u, row in rows.items():
    assert row.items() <= full[u].items()      # the user's own (item, rating) pairs, nothing else
    assert len(row) == min(CAP, len(full[u]))
    if len(full[u]) <= CAP:
      assert row == full[u]
  same = build_taskset(ratings, cap=CAP, seed=3)
  np.testing.assert_array_equal(same.items, capped.items)
  other = _rows(build_taskset(ratings, cap=CAP, seed=4))
  assert any(set(other[u]) != set(rows[u]) for u in rows if len(full[u]) > CAP)
  # A user's subset depends on the seed and the user only, not on who else is in the set.
  alone = cap_histories(ratings.subset(ratings.user == 29), CAP, 3)
  assert set(alone.item.tolist()) == set(rows[29])
  # Kept in time order, like uncapped tasks.
  when = dict(zip(zip(ratings.user.tolist(), ratings.item.tolist()), ratings.timestamp.tolist()))
  for k, u in enumerate(capped.user.tolist()):
    assert np.all(np.diff([when[u, i] for i in capped.items[k, :capped.lengths[k]].tolist()]) > 0)


def test_cap_is_a_uniform_random_subset(ratings):
  """Over seeds, each rating of the longest user is kept with probability CAP / 31."""
  longest = ratings.subset(ratings.user == 29)
  kept = np.zeros(31)
  seeds = 400
  for seed in range(seeds):
    sub = cap_histories(longest, CAP, seed)
    kept += np.isin(longest.item, sub.item)
  share = kept / seeds
  assert np.abs(share - CAP / 31).max() < 4.5 * np.sqrt(CAP / 31 * (1 - CAP / 31) / seeds)


def test_max_length_still_drops_long_users(ratings):
  tasks = build_taskset(ratings, max_length=20, cap=CAP, seed=0)
  assert set(tasks.user.tolist()) == set(range(19)) and (tasks.lengths <= CAP).all()
  with pytest.raises(ValueError, match="below min_length"):
    build_taskset(ratings, min_length=8, cap=CAP)


def test_config_checks_the_cap():
  c = tiny_config()
  c.data.history_cap = -1
  with pytest.raises(ConfigError, match="data.history_cap must be >= 0"):
    validate(c)
  c.data.history_cap = c.data.query_size + c.data.min_support - 1
  with pytest.raises(ConfigError, match=f"data.history_cap={c.data.history_cap} is below data.query_size"):
    validate(c)
  c.data.history_cap = c.data.query_size + c.data.min_support
  validate(c)
