"""AUC, log-loss, HR@k, nDCG@k, MRR@k against small hand-made rankings."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from metarec_jax.eval.ranking import check_ranking_metric_names, ranking_metrics

NAMES = ("auc", "logloss", "hr@1", "hr@3", "ndcg@3", "mrr@3")


def test_per_positive_negatives_by_hand():
  # Task 0: positive A (0.9) beats 3 of its 4 negatives -> rank 2;
  #         positive B (0.1) beats none of 4 -> rank 5.
  pos = jnp.array([[0.9, 0.1]])
  neg = jnp.array([[[0.95, 0.5, 0.2, 0.0], [0.3, 0.4, 0.2, 0.6]]])
  mask = jnp.ones((1, 2, 4), bool)
  out = {k: float(v[0]) for k, v in ranking_metrics(pos, jnp.ones((1, 2), bool), neg, mask, NAMES).items()}
  np.testing.assert_allclose(out["auc"], (3 / 4 + 0 / 4) / 2, rtol=1e-6)
  assert out["hr@1"] == 0.0
  np.testing.assert_allclose(out["hr@3"], 0.5)
  np.testing.assert_allclose(out["ndcg@3"], (1 / math.log2(3) + 0) / 2, rtol=1e-6)
  np.testing.assert_allclose(out["mrr@3"], (1 / 2 + 0) / 2, rtol=1e-6)
  sp = lambda x: math.log1p(math.exp(x))
  ll = (sp(-0.9) + sp(-0.1) + sum(sp(x) for x in [0.95, 0.5, 0.2, 0.0, 0.3, 0.4, 0.2, 0.6])) / 10
  np.testing.assert_allclose(out["logloss"], ll, rtol=1e-6)


def test_masks_and_shared_candidates():
  # Shared candidates (all mode): one row of negatives for both positives; the
  # masked negative (score 5) and the masked positive are ignored.
  pos = jnp.array([[0.7, 0.3, 9.0]])
  pos_mask = jnp.array([[True, True, False]])
  neg = jnp.array([[[0.5, 5.0, 0.1]]])
  neg_mask = jnp.array([[[True, False, True]]])
  out = {k: float(v[0]) for k, v in ranking_metrics(pos, pos_mask, neg, neg_mask, NAMES).items()}
  # 0.7 -> rank 1, 0.3 -> rank 2 (among 0.5, 0.1).
  np.testing.assert_allclose(out["hr@1"], 0.5)
  np.testing.assert_allclose(out["mrr@3"], (1 + 1 / 2) / 2, rtol=1e-6)
  np.testing.assert_allclose(out["ndcg@3"], (1 + 1 / math.log2(3)) / 2, rtol=1e-6)
  np.testing.assert_allclose(out["auc"], (1 + 1 / 2) / 2, rtol=1e-6)


def test_ties_are_broken_at_random_in_expectation():
  # A constant scorer: each positive ties with its 4 negatives -> uniform rank in 1..5.
  pos = jnp.zeros((1, 1))
  neg = jnp.zeros((1, 1, 4))
  out = {k: float(v[0]) for k, v in
         ranking_metrics(pos, jnp.ones((1, 1), bool), neg, jnp.ones((1, 1, 4), bool), NAMES).items()}
  np.testing.assert_allclose(out["hr@1"], 1 / 5, rtol=1e-6)
  np.testing.assert_allclose(out["hr@3"], 3 / 5, rtol=1e-6)
  np.testing.assert_allclose(out["mrr@3"], (1 + 1 / 2 + 1 / 3) / 5, rtol=1e-6)
  np.testing.assert_allclose(out["ndcg@3"], (1 + 1 / math.log2(3) + 1 / 2) / 5, rtol=1e-6)
  np.testing.assert_allclose(out["auc"], 0.5)


def test_metric_names_are_checked():
  check_ranking_metric_names(("auc", "logloss", "hr@10", "ndcg@5", "mrr@99"), 100)
  with pytest.raises(ValueError, match="k must lie"):
    check_ranking_metric_names(("hr@100",), 100)
  with pytest.raises(ValueError, match="unknown ranking metric"):
    check_ranking_metric_names(("mae",), 100)
