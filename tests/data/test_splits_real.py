"""The real-data protocols: melu_states, temporal, random_users (tiny data and the real copies)."""

from __future__ import annotations

import warnings

import jax
import ml_collections
import numpy as np
import pytest

from metarec_jax import default_config
from metarec_jax.data import registry, splits
from metarec_jax.data.interactions import Dataset, FeatureTable, FieldSpec, Interactions
from metarec_jax.data.parsing import DataWarning
from metarec_jax.data.tasks import build_taskset, split_tasks
from tests.conftest import data_dir

pytestmark = pytest.mark.filterwarnings("ignore::metarec_jax.data.parsing.DataWarning")


def _table(n: int) -> FeatureTable:
  return FeatureTable((FieldSpec("f", "categorical", vocab_size=2),), {"f": np.ones(n, np.int32)})


def _ratings(rng, users, items, counts) -> Interactions:
  """Each user of ``users`` rates ``counts[k]`` distinct items of ``items``."""
  u, i = [], []
  for user, c in zip(users, counts):
    u.append(np.full(c, user))
    i.append(rng.choice(items, size=c, replace=False))
  return Interactions(np.concatenate(u), np.concatenate(i), rng.integers(1, 6, sum(counts)).astype(float))


@pytest.fixture(scope="module")
def melu_like():
  """A data set with four given scenarios, like MeLU's release (users 0..59 warm, 60..79 cold)."""
  rng = np.random.default_rng(0)
  warm_items, cold_items = np.arange(0, 150), np.arange(150, 200)
  counts = lambda n: rng.choice([5, 13, 40, 100, 101, 130], size=n)
  scen = {
      "warm": _ratings(rng, range(60), warm_items, counts(60)),
      "user_cold": _ratings(rng, range(60, 80), warm_items, counts(20)),
      "item_cold": _ratings(rng, range(60), cold_items, np.minimum(counts(60), 50)),
      "user_item_cold": _ratings(rng, range(60, 80), cold_items, np.minimum(counts(20), 50)),
  }
  inter = Interactions(*(np.concatenate([getattr(s, k) for s in scen.values()]) for k in ("user", "item", "rating")))
  return Dataset("melu-like", inter, _table(80), _table(200), scenarios=scen,
                 user_is_cold=np.arange(80) >= 60, item_is_cold=np.arange(200) >= 150)


def _users(r: Interactions) -> set[int]:
  return set(np.unique(r.user).tolist())


def test_filter_users():
  inter = Interactions(np.repeat([0, 1, 2], [12, 13, 101]), np.arange(126) % 120, np.ones(126))
  assert _users(splits.filter_users(inter, 13, 100)) == {1}
  assert _users(splits.filter_users(inter, 13, 0)) == {1, 2}


def test_melu_states_filter_and_holdouts(melu_like):
  pools = splits.scenario_pools(melu_like, "melu_states")
  for s, pool in pools.items():
    counts = np.bincount(pool.user)[np.unique(pool.user)]
    assert counts.min() >= 13 and counts.max() <= 100, s
    raw_counts = np.bincount(melu_like.scenarios[s].user)
    expect = {u for u in _users(melu_like.scenarios[s]) if 13 <= raw_counts[u] <= 100}
    assert _users(pool) == expect
  split = splits.make_split(melu_like, "melu_states", 3, valid_share=0.1, warm_test_share=0.1)
  warm = _users(pools["warm"])
  train, valid, test = _users(split.train), _users(split.valid), _users(split.tests["warm"])
  assert train | valid | test == warm and not (train & valid) and not (train & test) and not (valid & test)
  assert len(valid) == round(0.1 * len(warm)) and len(test) == round(0.1 * len(warm))
  for s in ("user_cold", "item_cold", "user_item_cold"):
    assert len(split.tests[s]) == len(pools[s])
  # Seeded: same seed, same split; another seed, other users.
  again = splits.make_split(melu_like, "melu_states", 3, valid_share=0.1, warm_test_share=0.1)
  assert _users(again.valid) == valid
  other = splits.make_split(melu_like, "melu_states", 4, valid_share=0.1, warm_test_share=0.1)
  assert _users(other.valid) != valid


def _assert_no_cold_in_training(data: Dataset, split: splits.ScenarioSplit, user_cold, item_cold):
  for role in (split.train, split.valid):
    assert not user_cold[role.user].any(), "a cold user is in meta-training/validation"
    assert not item_cold[role.item].any(), "a cold item is in meta-training/validation"
  held_out = _users(split.valid) | _users(split.tests.get("warm", Interactions([], [], [])))
  assert not (_users(split.train) & held_out)
  for s in ("user_cold", "user_item_cold"):
    if s in split.tests:
      assert user_cold[split.tests[s].user].all()
  for s in ("item_cold", "user_item_cold"):
    if s in split.tests:
      assert item_cold[split.tests[s].item].all()


def _assert_query_not_in_support(ratings: Interactions, query_size=10, support=90, rows=4096):
  tasks = build_taskset(ratings, min_length=13, max_length=100, pad_to=100)
  n = tasks.num_tasks
  pad = lambda x: np.concatenate([x, np.zeros((rows - n,) + x.shape[1:], x.dtype)])
  padded = jax.tree_util.tree_map(pad, tasks)  # one shape for every call: one compile
  batch = jax.device_get(split_tasks(padded, jax.random.PRNGKey(7919), query_size, support))
  batch = jax.tree_util.tree_map(lambda x: x[:n], batch)
  q = np.where(batch.query_mask, batch.query_items, -1)
  s = np.where(batch.support_mask, batch.support_items, -2)
  assert not (q[:, :, None] == s[:, None, :]).any(), "a query item of a test user is in its support set"
  assert batch.query_mask.sum(1).min() == query_size
  # Support = the rest of the task.
  assert np.array_equal(batch.support_mask.sum(1), np.asarray(tasks.lengths) - query_size)


def test_melu_states_no_cold_in_training_and_query_disjoint(melu_like):
  split = splits.make_split(melu_like, "melu_states", 0)
  _assert_no_cold_in_training(melu_like, split, melu_like.user_is_cold, melu_like.item_is_cold)
  for s, r in split.tests.items():
    _assert_query_not_in_support(r)


def test_melu_states_needs_scenarios(melu_like):
  import dataclasses
  with pytest.raises(ValueError, match="melu_states needs MeLU's four state files"):
    splits.make_split(dataclasses.replace(melu_like, scenarios=None), "melu_states", 0)


@pytest.fixture(scope="module")
def dated():
  """60 users joining over time, 100 items released 1990..1999."""
  rng = np.random.default_rng(1)
  n_users, n_items = 60, 100
  years = 1990 + np.arange(n_items) // 10
  ratings = _ratings(rng, range(n_users), np.arange(n_items), rng.integers(14, 60, n_users))
  join = np.arange(n_users) * 100
  ts = join[ratings.user] + rng.integers(0, 5000, len(ratings))
  inter = Interactions(ratings.user, ratings.item, ratings.rating, ts)
  return Dataset("dated", inter, _table(n_users), _table(n_items), item_year=years.astype(np.int32))


def test_temporal_flags_and_scenarios(dated):
  user_new, item_new, threshold = splits.temporal_flags(dated, new_item_year=1998, new_user_quantile=0.8)
  assert item_new.sum() == 20 and item_new[80:].all()
  first = np.full(60, np.iinfo(np.int64).max)
  np.minimum.at(first, dated.interactions.user, dated.interactions.timestamp)
  assert np.array_equal(user_new, first > threshold)
  assert 10 <= user_new.sum() <= 13  # about 20% of 60
  split = splits.make_split(dated, "temporal", 0, new_item_year=1998, new_user_quantile=0.8, min_ratings=3,
                            max_ratings=100)
  _assert_no_cold_in_training(dated, split, user_new, item_new)
  pools = splits.scenario_pools(dated, "temporal", new_item_year=1998, min_ratings=1, max_ratings=0)
  assert sum(len(p) for p in pools.values()) == len(dated.interactions)  # every rating, once
  assert not user_new[pools["warm"].user].any() and not item_new[pools["warm"].item].any()
  assert user_new[pools["user_cold"].user].all() and not item_new[pools["user_cold"].item].any()


def test_temporal_needs_timestamps(melu_like):
  with pytest.raises(ValueError, match="temporal needs rating timestamps"):
    splits.make_split(melu_like, "temporal", 0)


def test_random_users(dated):
  split = splits.make_split(dated, "random_users", 0, valid_share=0.1, warm_test_share=0.1)
  train, valid, test = _users(split.train), _users(split.valid), _users(split.tests["user_cold"])
  assert (len(train), len(valid), len(test)) == (48, 6, 6)
  assert not (train & valid) and not (train & test) and not (valid & test)
  assert set(split.tests) == {"user_cold"}
  _assert_query_not_in_support(split.tests["user_cold"])


def test_make_split_passes_options_and_cold_flags_unchanged(melu_like):
  import dataclasses
  data = dataclasses.replace(melu_like, split_options={"min_ratings": 40, "new_item_year": 1})
  split = splits.make_split(data, "melu_states", 0)
  assert np.bincount(split.tests["user_cold"].user)[np.unique(split.tests["user_cold"].user)].min() >= 40
  split = splits.make_split(data, "melu_states", 0, min_ratings=13)  # explicit kwargs win
  assert np.bincount(split.tests["user_cold"].user)[np.unique(split.tests["user_cold"].user)].min() == 13
  a = splits.split_cold_flags(melu_like, 5, valid_share=0.2, warm_test_share=0.1)
  b = splits.make_split(data, "cold_flags", 5, valid_share=0.2, warm_test_share=0.1)
  assert np.array_equal(a.train.user, b.train.user) and np.array_equal(a.valid.item, b.valid.item)
  assert all(np.array_equal(a.tests[s].user, b.tests[s].user) for s in a.tests)


def _data_cfg(**kw) -> ml_collections.ConfigDict:
  c = default_config().data
  c.update(kw)
  return c


def test_registry_needs_path_and_records_options(tmp_path):
  with pytest.raises(FileNotFoundError, match="set data.path"):
    registry.load_dataset(_data_cfg(name="melu"))
  from tests.data.tiny_files import write_ml100k
  d = write_ml100k(tmp_path / "ml")
  data = registry.load_dataset(_data_cfg(name="movielens", path=str(d), min_ratings=5))
  assert data.split_options == {"new_item_year": 1997, "min_ratings": 5, "new_user_quantile": 0.8}
  data = registry.load_dataset(_data_cfg(name="movielens", path=str(d), max_ratings=50, new_item_year=1990))
  assert data.split_options["max_ratings"] == 50 and data.split_options["new_item_year"] == 1990


def test_real_melu_states_split():
  d = data_dir("melu-ml1m")
  data = registry.load_dataset(_data_cfg(name="melu", path=str(d)))
  split = splits.make_split(data, "melu_states", 0, valid_share=0.1, warm_test_share=0.1)
  assert (len(_users(split.train)), len(_users(split.valid)), len(_users(split.tests["warm"]))) == (2123, 265, 265)
  _assert_no_cold_in_training(data, split, data.user_is_cold, data.item_is_cold)
  for s in ("warm", "user_cold", "user_item_cold"):
    _assert_query_not_in_support(split.tests[s])


def test_real_ml100k_temporal_split():
  d = data_dir("ml-100k")
  data = registry.load_dataset(_data_cfg(name="movielens", path=str(d)))
  user_new, item_new, _ = splits.temporal_flags(data, new_item_year=1997)
  split = splits.make_split(data, "temporal", 0, valid_share=0.1, warm_test_share=0.1)
  _assert_no_cold_in_training(data, split, user_new, item_new)
  for s in split.tests:
    _assert_query_not_in_support(split.tests[s])


def test_real_melu_prepare_for_the_engine():
  """experiment.prepare builds the melu_states task sets without changes to the engine."""
  from metarec_jax import experiment
  d = data_dir("melu-ml1m")
  c = default_config()
  c.data.update(dict(name="melu", path=str(d), protocol="melu_states", max_ratings=100, support_cap=90))
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", DataWarning)
    prep = experiment.prepare(c, 0)
  assert prep.train.num_tasks == 2123 and prep.valid_batch.num_tasks == 265
  assert {s: b.num_tasks for s, b in prep.test_batches.items()} == {
      "warm": 265, "user_cold": 668, "item_cold": 2863, "user_item_cold": 723}
