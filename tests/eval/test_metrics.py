"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarec_jax.eval.metrics import (METRIC_FAMILIES, NDCG_FAMILIES, check_metric_names, compute_metrics,
                                      hit_rate_at_k, mae, ndcg_at_k, rmse)


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


# --------------------------------------------------------------------------- published nDCG definitions
#
# One user's query: five rated items and one padded slot (rating 5, score 9.0, masked out).
#   position   0    1    2    3    4  | 5 (pad)
#   rating     3    5    4    5    1  | 5
#   score     4.2  3.9  3.9  3.1  2.5 | 9.0
# Ties: ratings 5 at positions 1 and 3; scores 3.9 at positions 1 and 2.
# Exponential gains 2^r - 1: r=5 -> 31, r=4 -> 15, r=3 -> 7, r=1 -> 1.
# Discounts 1/log2(r+1): r=1 -> 1, r=2 -> 1/1.5849625 = 0.6309298, r=3 -> 0.5, r=4 -> 0.4306766, r=5 -> 0.3868528.
# Ranking by score, ties to the earlier position: 0, 1, 2, 3, 4 (ratings 3, 5, 4, 5, 1).
# Ranking by score, ties to the later position (numpy's argsort[::-1]): 0, 2, 1, 3, 4.
# The ideal exponential DCG@3 (ratings 5, 5, 4): 31 + 31 * 0.6309298 + 15 * 0.5 = 58.0588.
EX_T = [[3.0, 5.0, 4.0, 5.0, 1.0, 5.0]]
EX_P = [[4.2, 3.9, 3.9, 3.1, 2.5, 9.0]]
EX_M = [[True, True, True, True, True, False]]
IDCG3 = 31 + 31 * 0.6309298 + 15 * 0.5  # 58.0588
EXPECTED_AT_3 = {
    # ours: ratings 3, 5, 4 at ranks 1-3: (7 + 31 * 0.6309298 + 15 * 0.5) / 58.0588 = 34.0588 / 58.0588
    "ndcg@3": 34.0588 / 58.0588,  # 0.58663
    # TaNP / ColdNAS: the same sums (their difference is only an all-zero query)
    "ndcg_tanp@3": 34.0588 / 58.0588,  # 0.58663
    # scikit-learn, linear gains, tied scores averaged: rank 1 -> 3 * 1 = 3; the tie (ratings 5 and 4)
    # shares ranks 2-3: mean gain 4.5 * (0.6309298 + 0.5) = 5.0892; DCG = 8.0892.
    # Ideal: 5 + 5 * 0.6309298 + 4 * 0.5 = 10.1546.
    "ndcg_linear@3": 8.0892 / 10.1546,  # 0.79660
    # MAMO: predicted top 3 = positions 0, 1, 2 (ratings 3, 5, 4), re-sorted 5, 4, 3:
    # 31 + 15 * 0.6309298 + 7 * 0.5 = 43.9639.
    "ndcg_mamo@3": 43.9639 / 58.0588,  # 0.75723
    # TF MeLU: true top 3 by argsort[::-1] = positions 3, 1, 2 (ratings 5, 5, 4); their 0-based predicted
    # ranks (ties later-first: 0, 2, 1, 3, 4) are 3, 2, 1: 31 / log2(5) + 31 / log2(4) + 15 / log2(3)
    # = 13.3510 + 15.5 + 9.4639 = 38.3149; ideal 58.0588.
    "ndcg_melu_tf@3": 38.3149 / 58.0588,  # 0.65993
    # MetaHIN: true top 3 = positions {1, 2, 3}, in query order; their scores 3.9, 3.9, 3.1 are the gains:
    # 3.9 + 3.9 * 0.6309298 + 3.1 * 0.5 = 7.9106; ideal: ratings 5, 5, 4 -> 10.1546.
    "ndcg_metahin@3": 7.9106 / 10.1546,  # 0.77902
    # RecBole-MetaRec: relevant = true top 3 (ties earlier-first) = positions 1, 3, 2; the predicted top 3
    # (0, 1, 2) hits at ranks 2 and 3: 0.6309298 + 0.5 = 1.1309; ideal 1 + 0.6309298 + 0.5 = 2.1309.
    "ndcg_recbole@3": 1.1309 / 2.1309,  # 0.53072
}


def test_published_ndcg_definitions_by_hand():
  names = tuple(EXPECTED_AT_3)
  got = compute_metrics(jnp.array(EX_P), jnp.array(EX_T), jnp.array(EX_M), names)
  for name, want in EXPECTED_AT_3.items():
    np.testing.assert_allclose(got[name], [want], rtol=2e-5, err_msg=name)


def test_published_ndcg_at_5_by_hand():
  # k = 5 = every valid item. Exponential ideal DCG@5 (ratings 5, 5, 4, 3, 1):
  # 31 + 31 * 0.6309298 + 15 * 0.5 + 7 * 0.4306766 + 1 * 0.3868528 = 61.4604.
  # ndcg@5: ratings 3, 5, 4, 5, 1 by rank: 7 + 19.5588 + 7.5 + 31 * 0.4306766 + 0.3868528 = 47.7967.
  # MAMO: the top 5 is the whole query, re-sorted = the ideal -> 1.
  # RecBole-MetaRec: every valid item is relevant -> 1.
  # MetaHIN: all five in query order, scores as gains:
  # 4.2 + 3.9 * 0.6309298 + 3.9 * 0.5 + 3.1 * 0.4306766 + 2.5 * 0.3868528 = 10.9129;
  # ideal 5 + 5 * 0.6309298 + 4 * 0.5 + 3 * 0.4306766 + 1 * 0.3868528 = 11.8335.
  want = {"ndcg@5": 47.7967 / 61.4604, "ndcg_mamo@5": 1.0, "ndcg_recbole@5": 1.0,
          "ndcg_metahin@5": 10.9129 / 11.8335}
  got = compute_metrics(jnp.array(EX_P), jnp.array(EX_T), jnp.array(EX_M), tuple(want))
  for name, w in want.items():
    np.testing.assert_allclose(got[name], [w], rtol=2e-5, err_msg=name)


def test_published_ndcg_edge_cases():
  # An all-zero query: TaNP/ColdNAS score 1 (ColdNAS's convention). RecBole-MetaRec still calls the
  # top 2 "relevant" (ties earlier-first: positions 0, 1); the ranking by score is 1, 3, 2, 0, so the
  # top 2 hits once, at rank 1: 1 / (1 + 0.6309298) = 0.6131472. The others score 0.
  zeros = jnp.zeros((1, 4))
  mask = jnp.ones((1, 4), bool)
  pred = jnp.array([[0.1, 0.4, 0.2, 0.3]])
  got = compute_metrics(pred, zeros, mask, tuple(f"{f}@2" for f in NDCG_FAMILIES))
  want = {"ndcg_tanp@2": 1.0, "ndcg_recbole@2": 1 / 1.6309298}
  for name, v in got.items():
    np.testing.assert_allclose(v, [want.get(name, 0.0)], rtol=1e-6, err_msg=name)
  # A perfect prediction (distinct ratings) scores 1 under every definition but MetaHIN's, which
  # reads the predicted values of the true top 3 (positions 1, 3, 4: 4, 5, 3) in query order:
  # (4 + 5 * 0.6309298 + 3 * 0.5) / (5 + 4 * 0.6309298 + 3 * 0.5) = 8.6546 / 9.0237 = 0.95910.
  t = jnp.array([[1.0, 4.0, 2.0, 5.0, 3.0]])
  ones = jnp.ones((1, 5), bool)
  got = compute_metrics(t, t, ones, tuple(f"{f}@3" for f in NDCG_FAMILIES))
  for name, v in got.items():
    want = 8.65465 / 9.02372 if name.startswith("ndcg_metahin@") else 1.0
    np.testing.assert_allclose(v, [want], rtol=1e-5, err_msg=name)


def _ref_order(x, later_first=False):
  """Indices by decreasing x; equal values: earlier index first (or later, numpy's argsort[::-1])."""
  sign = -1 if later_first else 1
  return sorted(range(len(x)), key=lambda i: (-x[i], sign * i))


def _ref_disc(rank):  # rank is 1-based
  return 1.0 / math.log2(rank + 1)


def _reference(family, p, t, k):
  """Plain-Python nDCG of one unpadded list, written from each definition's description."""
  n = len(t)
  exp = [2.0 ** r - 1 for r in t]
  ideal_exp = sum(g * _ref_disc(r + 1) for r, g in enumerate(sorted(exp, reverse=True)[:k]))
  by_pred = _ref_order(p)
  if family in ("ndcg", "ndcg_tanp"):
    return sum(exp[i] * _ref_disc(r + 1) for r, i in enumerate(by_pred[:k])) / ideal_exp
  if family == "ndcg_linear":
    dcg, r = 0.0, 0
    for value in sorted(set(p), reverse=True):
      group = [i for i in range(n) if p[i] == value]
      share = sum(_ref_disc(q + 1) for q in range(r, r + len(group)) if q < k) / len(group)
      dcg += share * sum(t[i] for i in group)
      r += len(group)
    return dcg / sum(v * _ref_disc(q + 1) for q, v in enumerate(sorted(t, reverse=True)[:k]))
  if family == "ndcg_mamo":
    top = sorted((exp[i] for i in by_pred[:k]), reverse=True)
    return sum(g * _ref_disc(r + 1) for r, g in enumerate(top)) / ideal_exp
  if family == "ndcg_melu_tf":
    best = _ref_order(t, later_first=True)[:k]
    rank = {i: r + 1 for r, i in enumerate(_ref_order(p, later_first=True))}
    return (sum(exp[i] * _ref_disc(rank[i]) for i in best)
            / sum(exp[i] * _ref_disc(r + 1) for r, i in enumerate(best)))
  if family == "ndcg_metahin":
    best = sorted(_ref_order(t, later_first=True)[:k])
    dcg = sum(p[i] * _ref_disc(j + 1) for j, i in enumerate(best))
    return dcg / sum(v * _ref_disc(j + 1) for j, v in enumerate(sorted((t[i] for i in best), reverse=True)))
  if family == "ndcg_recbole":
    relevant = set(_ref_order(t)[:k])
    dcg = sum(_ref_disc(r + 1) for r, i in enumerate(by_pred[:k]) if i in relevant)
    return dcg / sum(_ref_disc(r + 1) for r in range(min(len(relevant), k)))
  raise AssertionError(family)


def test_published_ndcg_match_plain_python_references_with_padding():
  rng = np.random.default_rng(1)
  t_all, n_valid = 6, 7
  # Integer ratings and scores rounded to 0.5 so that both kinds of ties occur often.
  target = rng.integers(1, 6, (t_all, n_valid)).astype(np.float32)
  pred = np.round(rng.uniform(1, 5, (t_all, n_valid)) * 2) / 2
  pad = lambda x, v: np.concatenate([x, np.full((t_all, 3), v, np.float32)], 1)
  mask = pad(np.ones((t_all, n_valid), bool), False)
  names = tuple(f"{f}@{k}" for f in NDCG_FAMILIES for k in (1, 3, 5))
  got = compute_metrics(jnp.asarray(pad(pred, 99.0)), jnp.asarray(pad(target, 5.0)), jnp.asarray(mask), names)
  for name in names:
    family, k = name.split("@")
    want = [_reference(family, list(pred[i].astype(float)), list(target[i].astype(float)), int(k))
            for i in range(t_all)]
    np.testing.assert_allclose(got[name], want, rtol=1e-5, err_msg=name)


def test_mamo_is_never_below_ours():
  rng = np.random.default_rng(2)
  pred, target = rng.normal(3, 1, (50, 10)), rng.integers(1, 6, (50, 10)).astype(float)
  got = compute_metrics(jnp.asarray(pred), jnp.asarray(target), jnp.ones((50, 10), bool), ("ndcg@3", "ndcg_mamo@3"))
  assert np.all(np.asarray(got["ndcg_mamo@3"]) >= np.asarray(got["ndcg@3"]) - 1e-6)


def test_every_ndcg_family_passes_the_name_check_and_computes_under_jit():
  query_size = 10
  names = tuple(f"{f}@{k}" for f in NDCG_FAMILIES for k in (1, 3, 5, query_size - 1))
  check_metric_names(("mae", "rmse") + names, query_size)
  assert set(METRIC_FAMILIES) == {"mae", "rmse"} | {f"{f}@K" for f in NDCG_FAMILIES}
  rng = np.random.default_rng(3)
  pred, target = rng.normal(3, 1, (4, query_size)), rng.integers(1, 6, (4, query_size)).astype(float)
  mask = np.ones((4, query_size), bool)
  mask[1, 6:] = False
  fn = jax.jit(compute_metrics, static_argnames=("names",))
  out = fn(jnp.asarray(pred), jnp.asarray(target), jnp.asarray(mask), names=names)
  for name in names:
    assert out[name].shape == (4,), name
    assert np.all(np.isfinite(np.asarray(out[name]))), name


def test_published_ndcg_names_are_checked():
  with pytest.raises(ValueError, match=r"'ndcg_mamo@10'.*k must lie"):
    check_metric_names(("ndcg_mamo@10",), 10)
  with pytest.raises(ValueError, match=r"'ndcg_linear@x'.*cutoff must be an integer"):
    check_metric_names(("ndcg_linear@x",), 10)
  with pytest.raises(ValueError, match=r"'ndcg_tanp'.*name a cutoff, e.g. ndcg_tanp@3"):
    check_metric_names(("ndcg_tanp",), 10)
  with pytest.raises(ValueError, match=r"unknown metric 'ndcg_foo@3'; known: mae, rmse, ndcg@K, ndcg_tanp@K"):
    check_metric_names(("ndcg_foo@3",), 10)
  with pytest.raises(ValueError, match="unknown metric"):
    compute_metrics(jnp.ones((1, 3)), jnp.ones((1, 3)), jnp.ones((1, 3)), ("ndcg_foo@3",))
