"""TaskSet building and support/query splitting."""

from __future__ import annotations

from collections import defaultdict

import jax
import numpy as np
import pytest

from metarec_jax.data import Interactions, build_taskset, sample_batch, split_tasks
from metarec_jax.data.tasks import pad_batch


def _reference_groups(inter: Interactions):
  groups = defaultdict(dict)
  for u, i, r in zip(inter.user, inter.item, inter.rating):
    groups[int(u)][int(i)] = float(r)
  return groups


def test_build_taskset_groups_every_rating(tiny_data):
  inter = tiny_data.interactions
  tasks = build_taskset(inter, min_length=1)
  ref = _reference_groups(inter)
  assert tasks.num_tasks == len(ref)
  for t in range(tasks.num_tasks):
    u, n = int(tasks.user[t]), int(tasks.lengths[t])
    got = dict(zip(tasks.items[t, :n].tolist(), tasks.ratings[t, :n].tolist()))
    assert got == ref[u]
    assert (tasks.items[t, n:] == 0).all() and (tasks.ratings[t, n:] == 0).all()


def test_build_taskset_filters_by_length():
  inter = Interactions(user=[0, 0, 0, 1, 2, 2], item=[1, 2, 3, 1, 4, 5], rating=[1, 2, 3, 4, 5, 1])
  tasks = build_taskset(inter, min_length=2, max_length=2)
  assert tasks.user.tolist() == [2]
  with pytest.raises(ValueError, match="no user has between"):
    build_taskset(inter, min_length=4)
  with pytest.raises(ValueError, match="shorter than the longest"):
    build_taskset(inter, pad_to=2)


def test_split_is_disjoint_and_inside_the_task(tiny_data):
  tasks = build_taskset(tiny_data.interactions, min_length=14)
  batch = split_tasks(jax.device_put(tasks), jax.random.PRNGKey(0), 10, 20)
  for t in range(batch.num_tasks):
    n = int(tasks.lengths[t])
    q = set(np.asarray(batch.query_items[t])[np.asarray(batch.query_mask[t])].tolist())
    s = np.asarray(batch.support_items[t])[np.asarray(batch.support_mask[t])].tolist()
    assert len(q) == 10 and len(s) == min(n - 10, 20) and len(set(s)) == len(s)
    assert not q & set(s), "a query item is in the support set"
    assert q | set(s) <= set(tasks.items[t, :n].tolist())
    # Ratings travel with their items.
    lookup = dict(zip(tasks.items[t, :n].tolist(), tasks.ratings[t, :n].tolist()))
    for i, r in zip(np.asarray(batch.support_items[t])[:len(s)], np.asarray(batch.support_ratings[t])[:len(s)]):
      assert lookup[int(i)] == float(r)


def test_split_does_not_depend_on_padding(tiny_data):
  tight = jax.device_put(build_taskset(tiny_data.interactions, min_length=14))
  loose = jax.device_put(build_taskset(tiny_data.interactions, min_length=14, pad_to=tight.max_length + 9))
  key = jax.random.PRNGKey(5)
  a, b = split_tasks(tight, key, 10, 8), split_tasks(loose, key, 10, 8)
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(x, y)


def test_sample_batch_is_reproducible_and_fresh(tiny_data):
  tasks = jax.device_put(build_taskset(tiny_data.interactions, min_length=14))
  a = sample_batch(tasks, jax.random.PRNGKey(1), 8, 10, 5)
  b = sample_batch(tasks, jax.random.PRNGKey(1), 8, 10, 5)
  c = sample_batch(tasks, jax.random.PRNGKey(2), 8, 10, 5)
  np.testing.assert_array_equal(a.query_items, b.query_items)
  assert len(set(np.asarray(a.user).tolist())) == 8  # without replacement
  assert not np.array_equal(a.query_items, c.query_items)


def test_fixed_k_support_pads_short_tasks():
  inter = Interactions(user=[0] * 12, item=list(range(1, 13)), rating=[3.0] * 12)
  tasks = jax.device_put(build_taskset(inter))
  batch = split_tasks(tasks, jax.random.PRNGKey(0), 10, 5)
  assert batch.support_mask.sum() == 2 and batch.query_mask.sum() == 10


def test_pad_batch_adds_masked_tasks(tiny_data):
  tasks = jax.device_put(build_taskset(tiny_data.interactions, min_length=14))
  batch = split_tasks(jax.tree_util.tree_map(lambda x: x[:5], tasks), jax.random.PRNGKey(0), 10, 4)
  padded, n = pad_batch(batch, 4)
  assert n == 5 and padded.num_tasks == 8
  assert not padded.query_mask[5:].any() and not padded.support_mask[5:].any()
