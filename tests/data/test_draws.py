"""Exact integer draws: `randbelow` against Python integers, `distinct_below` against its distribution."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from metarec_jax.data import tasks as tasks_lib
from metarec_jax.data.draws import distinct_below, randbelow
from metarec_jax.types import TaskSet


def test_randbelow_is_the_exact_64_bit_multiply_shift():
  """``floor(R * m / 2**64)`` of the key's 64 bits, checked with Python integers, for small and huge bounds."""
  key = jax.random.PRNGKey(3)
  bits = np.asarray(jax.random.bits(key, (2, 500), jnp.uint32)).astype(object)
  fn = jax.jit(randbelow, static_argnums=2)
  for m in (1, 7, 1000, 123_456_789, 2 ** 31 - 1):
    ref = [((int(h) << 32 | int(lo)) * m) >> 64 for h, lo in zip(bits[0], bits[1])]
    np.testing.assert_array_equal(np.asarray(fn(key, jnp.int32(m), 500)), ref)


@pytest.mark.parametrize("n,k", [(1, 1), (5, 5), (40, 7), (1_000_003, 32)])
def test_distinct_below_draws_distinct_indices_in_range(n, k):
  out = np.asarray(jax.jit(distinct_below, static_argnums=(1, 2))(jax.random.PRNGKey(n), n, k))
  assert out.dtype == np.int32 and out.shape == (k,)
  assert len(set(out.tolist())) == k and out.min() >= 0 and out.max() < n
  with pytest.raises(ValueError, match="k <= n"):
    distinct_below(jax.random.PRNGKey(0), 3, 4)


def test_distinct_below_is_a_uniform_ordered_sample():
  """Every ordered triple of range(6) equally often (120 cells), as choice(replace=False) draws them."""
  n, k, draws = 6, 3, 60_000
  keys = jax.random.split(jax.random.PRNGKey(1), draws)
  ours = np.asarray(jax.jit(jax.vmap(lambda key: distinct_below(key, n, k)))(keys))
  cells = {t: i for i, t in enumerate(itertools.permutations(range(n), k))}
  counts = np.bincount([cells[tuple(t)] for t in ours.tolist()], minlength=len(cells))
  assert stats.chisquare(counts).pvalue > 1e-4
  # a biased draw fails the same test: the first index never 0
  biased = [cells[tuple(t)] for t in ours.tolist() if t[0] != 0]
  assert stats.chisquare(np.bincount(biased, minlength=len(cells))).pvalue < 1e-6


def test_large_task_sets_draw_their_batch_at_a_cost_independent_of_their_size(monkeypatch):
  """From LARGE_TASK_SET tasks on, the batch comes from distinct_below; below it, from jax.random.choice."""
  n = 50
  tasks = TaskSet(user=jnp.arange(n, dtype=jnp.int32), items=jnp.ones((n, 4), jnp.int32),
                  ratings=jnp.ones((n, 4)), lengths=jnp.full((n,), 4, jnp.int32))
  key = jax.random.PRNGKey(5)
  small = tasks_lib.sample_batch(tasks, key, 16, 2, 2)
  k_pick, _ = jax.random.split(key)
  np.testing.assert_array_equal(small.user, jax.random.choice(k_pick, n, (16,), replace=False))
  monkeypatch.setattr(tasks_lib, "LARGE_TASK_SET", n)
  large = tasks_lib.sample_batch(tasks, key, 16, 2, 2)
  np.testing.assert_array_equal(large.user, distinct_below(k_pick, n, 16))
  assert len(set(np.asarray(large.user).tolist())) == 16
