"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from metarec_jax.eval.metrics import check_metric_names, compute_metrics, hit_rate_at_k, mae, ndcg_at_k, rmse


def test_mae_and_rmse_by_hand():
  pred = jnp.array([[3.0, 4.0, 2.0, 9.0]])
  target = jnp.array([[4.0, 4.0, 5.0, 1.0]])
  mask = jnp.array([[1.0, 1.0, 1.0, 0.0]])  # the last entry is padding
  np.testing.assert_allclose(mae(pred, target, mask), [(1 + 0 + 3) / 3])
  np.testing.assert_allclose(rmse(pred, target, mask), [math.sqrt((1 + 0 + 9) / 3)], rtol=1e-6)


def test_ndcg_by_hand():
  # Ratings 5, 3, 4, 1 predicted in the order 2nd > 1st > 4th > 3rd.
  target = jnp.array([[5.0, 3.0, 4.0, 1.0]])
  pred = jnp.array([[0.8, 0.9, 0.1, 0.3]])
  mask = jnp.ones((1, 4), bool)
  g = lambda r: 2.0 ** r - 1
  d = lambda rank: 1 / math.log2(rank + 1)
  dcg3 = g(3) * d(1) + g(5) * d(2) + g(1) * d(3)
  idcg3 = g(5) * d(1) + g(4) * d(2) + g(3) * d(3)
  np.testing.assert_allclose(ndcg_at_k(pred, target, mask, 3), [dcg3 / idcg3], rtol=1e-6)
  # A perfect ranking scores 1; padding is never ranked.
  np.testing.assert_allclose(ndcg_at_k(target, target, mask, 3), [1.0], rtol=1e-6)
  padded_t = jnp.array([[5.0, 3.0, 4.0, 1.0, 5.0]])
  padded_p = jnp.array([[0.8, 0.9, 0.1, 0.3, 99.0]])
  padded_m = jnp.array([[True, True, True, True, False]])
  np.testing.assert_allclose(ndcg_at_k(padded_p, padded_t, padded_m, 3), [dcg3 / idcg3], rtol=1e-6)


def test_padding_does_not_change_metrics():
  rng = np.random.default_rng(0)
  pred, target = rng.normal(3, 1, (5, 8)), rng.integers(1, 6, (5, 8)).astype(float)
  mask = np.ones((5, 8), bool)
  base = compute_metrics(jnp.asarray(pred), jnp.asarray(target), jnp.asarray(mask))
  pad = lambda x, v: np.concatenate([x, np.full((5, 3), v)], 1)
  padded = compute_metrics(jnp.asarray(pad(pred, 100.0)), jnp.asarray(pad(target, 5.0)),
                           jnp.asarray(pad(mask, False)))
  for k in base:
    np.testing.assert_allclose(base[k], padded[k], rtol=1e-6)


def test_hit_rate_by_hand():
  scores = jnp.array([[0.9, 0.1, 0.5], [0.9, 0.1, 0.5]])
  labels = jnp.array([[0, 1, 0], [0, 0, 1]])
  np.testing.assert_allclose(hit_rate_at_k(scores, labels, jnp.ones((2, 3), bool), 2), [0.0, 1.0])


def test_metric_names_are_checked():
  check_metric_names(("mae", "ndcg@3"), 10)
  with pytest.raises(ValueError, match="k must lie"):
    check_metric_names(("ndcg@10",), 10)
  with pytest.raises(ValueError, match="unknown metric"):
    check_metric_names(("auc",), 10)
