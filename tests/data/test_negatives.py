"""Negative sampling: never the user's items, distinct, reproducible, weighted as asked."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarec_jax.data import build_taskset, sample_batch, split_tasks
from metarec_jax.data.implicit import to_implicit
from metarec_jax.data.negatives import (implicit_eval_batch, pool_logits, sample_negatives, seen_matrix,
                                        with_negatives)


@pytest.fixture(scope="module")
def implicit_setup(tiny_data):
  data = to_implicit(tiny_data, 4.0)
  seen = seen_matrix(data.interacted, data.num_users, data.num_items)
  tasks = jax.device_put(build_taskset(data.interactions, min_length=8))
  return data, seen, tasks


def _check_grouped(items, labels, mask, seen, users, ratio):
  """Every valid negative is unseen by its user and distinct within the task."""
  for t, u in enumerate(np.asarray(users)):
    g_items = np.asarray(items[t]).reshape(-1, 1 + ratio)
    g_mask = np.asarray(mask[t]).reshape(-1, 1 + ratio)
    np.testing.assert_array_equal(np.asarray(labels[t]).reshape(-1, 1 + ratio)[:, 0], 1.0)
    assert (np.asarray(labels[t]).reshape(-1, 1 + ratio)[:, 1:] == 0).all()
    pos = g_items[:, 0][g_mask[:, 0]]
    assert seen[u, pos].all()
    negs = g_items[:, 1:][g_mask[:, 1:]]
    assert not seen[u, negs].any(), "a negative is an item the user interacted with"
    yield negs


def test_training_negatives_avoid_every_seen_item(implicit_setup):
  data, seen, tasks = implicit_setup
  logits = pool_logits(np.arange(data.num_items), data.num_items)
  batch = sample_batch(tasks, jax.random.PRNGKey(0), 16, 4, 5)
  fn = jax.jit(with_negatives, static_argnums=4)
  out = fn(batch, jax.random.PRNGKey(1), jnp.asarray(logits), jnp.asarray(seen), 3)
  assert out.support_items.shape == (16, 5 * 4) and out.query_items.shape == (16, 4 * 4)
  for t in range(16):
    s = list(_check_grouped(out.support_items[t:t + 1], out.support_ratings[t:t + 1], out.support_mask[t:t + 1],
                            seen, out.user[t:t + 1], 3))[0]
    q = list(_check_grouped(out.query_items[t:t + 1], out.query_ratings[t:t + 1], out.query_mask[t:t + 1],
                            seen, out.user[t:t + 1], 3))[0]
    both = np.concatenate([s, q])
    assert len(np.unique(both)) == len(both), "support and query negatives repeat"
  again = fn(batch, jax.random.PRNGKey(1), jnp.asarray(logits), jnp.asarray(seen), 3)
  np.testing.assert_array_equal(out.support_items, again.support_items)  # same key, same negatives
  other = fn(batch, jax.random.PRNGKey(2), jnp.asarray(logits), jnp.asarray(seen), 3)
  assert (np.asarray(other.support_items) != np.asarray(out.support_items)).any()


def test_pool_limits_and_popularity_weights():
  seen_row = jnp.zeros(6, bool).at[1].set(True)
  logits = pool_logits(np.array([0, 1, 2, 3]), 6, "popularity", counts=np.array([999, 50, 0, 0, 7, 7]))
  assert np.isneginf(logits[4:]).all()
  draws = np.array([np.asarray(sample_negatives(jax.random.PRNGKey(i), jnp.asarray(logits), seen_row, 1)[0])[0]
                    for i in range(60)])
  assert set(draws) <= {0, 2, 3}          # item 1 is seen, items 4, 5 outside the pool
  assert (draws == 0).mean() > 0.9        # weight 1000 against 1 + 1
  items, valid = sample_negatives(jax.random.PRNGKey(0), jnp.asarray(logits), seen_row, 5)
  assert valid.sum() == 3 and set(np.asarray(items)[np.asarray(valid)]) == {0, 2, 3}
  with pytest.raises(ValueError, match="negative_sampling"):
    pool_logits(np.arange(3), 3, "zipf")


def test_eval_negatives_are_reproducible_and_unseen(implicit_setup):
  data, seen, tasks = implicit_setup
  batch = split_tasks(tasks, jax.random.PRNGKey(3), 4, 4)
  logits = pool_logits(np.arange(data.num_items), data.num_items)
  kw = dict(support_logits=logits, query_logits=logits, seen=jnp.asarray(seen), ratio=2, num_negatives=20,
            mode="sampled", chunk=16)
  a, layout = implicit_eval_batch(batch, jax.random.PRNGKey(5), **kw)
  b, _ = implicit_eval_batch(batch, jax.random.PRNGKey(5), **kw)
  for x, y in zip(a.__dict__.values(), b.__dict__.values()):
    np.testing.assert_array_equal(x, y)
  assert layout.width == 20 and a.query_items.shape == (tasks.num_tasks, 4 * 21)
  list(_check_grouped(a.query_items, a.query_ratings, a.query_mask, seen, a.user, 20))
  list(_check_grouped(a.support_items, a.support_ratings, a.support_mask, seen, a.user, 2))
  pos, pos_mask, neg, neg_mask = layout.split(jnp.asarray(a.query_items, jnp.float32), a)
  np.testing.assert_array_equal(pos, np.asarray(batch.query_items, np.float32))
  # All unseen items of the pool: the mask is exactly "not seen".
  pool = np.arange(0, data.num_items, 2)
  half = pool_logits(pool, data.num_items)
  c, lay = implicit_eval_batch(batch, jax.random.PRNGKey(5), **{**kw, "query_logits": half, "mode": "all"})
  assert lay.width == len(pool)
  _, _, neg, neg_mask = lay.split(jnp.asarray(c.query_items, jnp.float32), c)
  np.testing.assert_array_equal(np.asarray(neg)[:, 0], np.broadcast_to(pool, (tasks.num_tasks, len(pool))))
  np.testing.assert_array_equal(np.asarray(neg_mask)[:, 0], ~seen[np.asarray(c.user)][:, pool])
