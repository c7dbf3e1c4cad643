"""Masked per-task metrics. Every function maps ``[T, N]`` arrays to ``[T]``.

nDCG@k ranks a task's valid query items by predicted score (ties broken by
position) and uses exponential gains ``2^rating - 1``; a task whose ideal DCG
is 0 scores 0.

Beside ``ndcg@K`` (ours, unchanged) the module implements the nDCG
definitions of the public cold-start codebases, one name per definition, so
that a table can be put beside a published one computed the same way
(``docs/ndcg.md`` compares them on MeLU's MovieLens-1M release):

============== ======================================================================
name           whose definition
============== ======================================================================
ndcg_tanp@K    TaNP, ColdNAS: ``ndcg@K`` except that an all-zero query scores 1
ndcg_linear@K  scikit-learn ``ndcg_score``: linear gains, tied scores averaged
ndcg_mamo@K    MAMO: the predicted top-k re-sorted by the true ratings (a set measure)
ndcg_melu_tf@K the unofficial TensorFlow MeLU: the true top-k at their predicted ranks
ndcg_metahin@K MetaHIN: predicted scores of the true top-k as gains, in query order
ndcg_recbole@K RecBole-MetaRec: binary relevance = the k highest-rated query items
============== ======================================================================

Every definition discounts rank ``r`` (1-based) by ``1 / log2(r + 1)``;
they differ in the gains, in which items the DCG and the ideal DCG sum over,
and in how ties are broken. Where a codebase's tie order is
implementation-defined (``torch.sort``, ``torch.topk``) ties go to the earlier
query position; where it is numpy's ``argsort(x)[::-1]`` idiom (stable for
lists of 16 or fewer, then reversed) ties go to the later query position, as
there. Padded entries are never ranked and never count.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

METRICS = ("mae", "rmse", "ndcg@3", "ndcg@5")

# The nDCG families: each ``<family>@K`` is a metric name (``K`` a cutoff below the query size).
NDCG_FAMILIES = ("ndcg", "ndcg_tanp", "ndcg_linear", "ndcg_mamo", "ndcg_melu_tf", "ndcg_metahin", "ndcg_recbole")
# Every metric name this module knows, ``@K`` standing for any valid cutoff.
METRIC_FAMILIES = ("mae", "rmse") + tuple(f"{f}@K" for f in NDCG_FAMILIES)


def _count(mask):
  return jnp.maximum(mask.sum(-1), 1)


def mae(pred: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean absolute error per task over the valid entries."""
  return jnp.sum(jnp.abs(pred - target) * mask, -1) / _count(mask)


def rmse(pred: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
  """Root mean squared error per task over the valid entries."""
  return jnp.sqrt(jnp.sum((pred - target) ** 2 * mask, -1) / _count(mask))


def _dcg(gains_in_rank_order: jax.Array, k: int) -> jax.Array:
  top = gains_in_rank_order[..., :k]
  discounts = 1.0 / jnp.log2(jnp.arange(2, top.shape[-1] + 2, dtype=jnp.float32))
  return jnp.sum(top * discounts, -1)


def ndcg_at_k(pred: jax.Array, target: jax.Array, mask: jax.Array, k: int) -> jax.Array:
  """nDCG@k per task: items ranked by ``pred``, gains ``2^target - 1``."""
  gains = jnp.where(mask, 2.0 ** target - 1.0, 0.0)
  scores = jnp.where(mask, pred, -jnp.inf)
  order = jnp.argsort(-scores, axis=-1, stable=True)
  dcg = _dcg(jnp.take_along_axis(gains, order, -1), k)
  ideal = _dcg(-jnp.sort(-gains, axis=-1), k)
  return jnp.where(ideal > 0, dcg / jnp.where(ideal > 0, ideal, 1.0), 0.0)


# --------------------------------------------------------------------------- published definitions


def _ratio(dcg, ideal, empty):
  """``dcg / ideal``, and ``empty`` where the ideal DCG is 0."""
  return jnp.where(ideal > 0, dcg / jnp.where(ideal > 0, ideal, 1.0), empty)


def _desc_first(x, mask):
  """Valid entries by decreasing ``x``; ties: the earlier position first; padding last."""
  return jnp.argsort(-jnp.where(mask, x, -jnp.inf), axis=-1, stable=True)


def _desc_last(x, mask):
  """Valid entries by decreasing ``x``; ties: the later position first; padding last.

  The order of numpy's ``np.argsort(x)[::-1]`` on a list of 16 or fewer
  (numpy sorts those stably, and the reversal puts the later of equal values first).
  """
  return jnp.flip(jnp.argsort(jnp.where(mask, x, -jnp.inf), axis=-1, stable=True), -1)


def _exp_gains(target, mask):
  return jnp.where(mask, 2.0 ** target - 1.0, 0.0)


def _cum_discounts(n: int, k: int):
  """``C[m]`` = sum of the discounts of ranks ``1..min(m, k)``, for ``m = 0..n``."""
  d = 1.0 / jnp.log2(jnp.arange(2, n + 2, dtype=jnp.float32))
  d = jnp.where(jnp.arange(n) < k, d, 0.0)
  return jnp.concatenate([jnp.zeros(1, jnp.float32), jnp.cumsum(d)])


def _selected(order, k, n, mask):
  """Boolean ``[..., n]``: the entries among the first ``k`` of ``order`` that are valid."""
  return (jax.nn.one_hot(order[..., :k], n, dtype=jnp.int32).sum(-2) > 0) & mask


def ndcg_tanp_at_k(pred: jax.Array, target: jax.Array, mask: jax.Array, k: int) -> jax.Array:
  """nDCG@k as TaNP and ColdNAS compute it.

  ``DCG@k = sum_{r=1..k} (2^{y_(r)} - 1) / log2(r + 1)`` with ``y_(r)`` the true
  rating of the item ranked ``r``-th by ``pred``; ``IDCG@k`` is the same sum
  over the ratings of the whole query sorted in decreasing order;
  ``nDCG@k = DCG@k / IDCG@k``. ``k`` is capped at the number of valid items
  (ColdNAS caps it explicitly; with masked gains of 0 the cap changes nothing).
  A task whose ideal DCG is 0 scores 1 (ColdNAS; TaNP divides by zero). On
  every task with a positive rating this equals ``ndcg@K``.

  Sources: IIEdm/TaNP ``TaNP/utils/scorer.py`` (``nDCG``, ``IDCG``; the ranked
  list is ``query_set_y_pred.sort(descending=True)`` in ``TaNP/TaNP.py``),
  LARS-research/ColdNAS ``utils/scorer.py`` (``nDCG``, ``IDCG``) with the ranked
  list from ``query_rec`` in ``model_lfm4.py``. Ties in ``pred`` (``torch.sort``,
  implementation-defined there) go to the earlier query position.
  """
  gains = _exp_gains(target, mask)
  dcg = _dcg(jnp.take_along_axis(gains, _desc_first(pred, mask), -1), k)
  ideal = _dcg(-jnp.sort(-gains, axis=-1), k)
  return _ratio(dcg, ideal, 1.0)


def ndcg_linear_at_k(pred: jax.Array, target: jax.Array, mask: jax.Array, k: int) -> jax.Array:
  """nDCG@k with linear gains, as scikit-learn's ``ndcg_score(y_true, y_score, k=k)``.

  ``DCG@k = sum_{r=1..k} y_(r) / log2(r + 1)``: the rating itself is the gain
  (not ``2^y - 1``). Items with equal ``pred`` share their ranks: each item of a
  tied group that occupies ranks ``a+1..a+m`` contributes
  ``y_i * (sum_{r=a+1..min(a+m,k)} 1 / log2(r + 1)) / m``, i.e. the group's gains
  are averaged over its positions (McSherry & Najork, 2008; scikit-learn's
  default ``ignore_ties=False``). ``IDCG@k`` sums the ratings of the whole
  query in decreasing order; a task whose ideal DCG is 0 scores 0.

  Source: scikit-learn ``sklearn/metrics/_ranking.py`` (``ndcg_score``,
  ``_dcg_sample_scores``, ``_tie_averaged_dcg``), the library call a
  reimplementation reaches for when it does not write its own.
  """
  n = target.shape[-1]
  gains = jnp.where(mask, target, 0.0).astype(jnp.float32)
  s = jnp.where(mask, pred, -jnp.inf)
  higher = (s[..., None, :] > s[..., :, None]).sum(-1)  # [..., i]: items scored above item i
  tied = (s[..., None, :] == s[..., :, None]).sum(-1)  # items scored like item i, itself included
  c = _cum_discounts(n, k)
  dcg = jnp.sum(gains * (c[higher + tied] - c[higher]) / tied, -1)
  ideal = _dcg(-jnp.sort(-gains, axis=-1), k)
  return _ratio(dcg, ideal, 0.0)


def ndcg_mamo_at_k(pred: jax.Array, target: jax.Array, mask: jax.Array, k: int) -> jax.Array:
  """nDCG@k as MAMO computes it: which items reach the top k, not their order.

  Take the ``k`` items ranked highest by ``pred``, sort *their true ratings* in
  decreasing order, and sum ``(2^y - 1) / log2(r + 1)`` over that re-sorted
  list; ``IDCG@k`` is the same sum over the ``k`` highest ratings of the whole
  query. Any order of the right items inside the top ``k`` scores 1, so the
  value is never below ``ndcg@K``. A task whose ideal DCG is 0 scores 0 (MAMO
  divides by zero).

  Source: dongmanqing/Code-for-MAMO ``utils.py`` (``ndcg``: ``pred_sort_y`` is
  re-sorted into ``top_pred_y`` before the DCG). MAMO ranks the arg-max rating
  class, so its own lists are full of ties (``torch.sort``, implementation-defined);
  here ties in ``pred`` go to the earlier query position.
  """
  gains = _exp_gains(target, mask)
  top = jnp.take_along_axis(gains, _desc_first(pred, mask), -1)[..., :k]
  dcg = _dcg(-jnp.sort(-top, axis=-1), k)
  ideal = _dcg(-jnp.sort(-gains, axis=-1), k)
  return _ratio(dcg, ideal, 0.0)


def ndcg_melu_tf_at_k(pred: jax.Array, target: jax.Array, mask: jax.Array, k: int) -> jax.Array:
  """nDCG@k as the unofficial TensorFlow MeLU computes it: the true top k at their predicted ranks.

  Let ``T`` be the ``k`` items with the highest true ratings and ``rank(i)`` the
  1-based rank of item ``i`` by ``pred`` in the *whole* query. Then
  ``DCG = sum_{i in T} (2^{y_i} - 1) / log2(rank(i) + 1)`` and
  ``IDCG = sum_{r=1..k} (2^{y_(r)} - 1) / log2(r + 1)`` over ``T`` in true order.
  Items of the predicted top ``k`` outside ``T`` cost nothing; an item of ``T``
  ranked below ``k`` still counts, at its lower discount. Ties in ratings (which
  item enters ``T``) and in ``pred`` follow that code's ``np.argsort(x)[::-1]``:
  the later query position first. A task whose ideal DCG is 0 scores 0.

  Source: dingyh0626/my-recommendation-system ``melu/metric.py`` (``NDCG``); its
  README notes that the official MeLU code gives no nDCG code and that its
  attempts stayed far below the paper.
  """
  gains = _exp_gains(target, mask)
  true_top = _desc_last(target, mask)[..., :k]
  rank0 = jnp.argsort(_desc_last(pred, mask), axis=-1)  # 0-based predicted rank of each item
  g = jnp.take_along_axis(gains, true_top, -1)
  r = jnp.take_along_axis(rank0, true_top, -1).astype(jnp.float32)
  dcg = jnp.sum(g / jnp.log2(r + 2.0), -1)
  ideal = _dcg(g, k)
  return _ratio(dcg, ideal, 0.0)


def ndcg_metahin_at_k(pred: jax.Array, target: jax.Array, mask: jax.Array, k: int) -> jax.Array:
  """nDCG@k as MetaHIN computes it: predicted scores as gains, no ranking by ``pred``.

  Let ``T`` be the ``k`` items with the highest true ratings, kept in *query
  order* ``i_1 < ... < i_k``. Then ``DCG = sum_{j=1..k} pred_{i_j} / log2(j + 1)``
  (the predicted scores are the gains, linear) and
  ``IDCG = sum_{j=1..k} y_(j) / log2(j + 1)`` with the true ratings of ``T``
  sorted in decreasing order. The value does not depend on how ``pred`` orders
  the items, only on the predicted values of the truly best ones and on the
  (random) query order; it can exceed 1. Ties in ratings follow that code's
  ``np.argsort(y)[::-1]``: the later query position first. A task whose ideal
  DCG is 0 scores 0.

  Source: rootlu/MetaHIN ``code/Evaluation.py`` (``ranking``, ``ndcg_at_k``,
  ``dcg_at_k``: ``scores[0] + sum(sc / log2(ind + 1))`` for ``ind = 2..k``, the
  same ``1 / log2(r + 1)`` discount).
  """
  n = target.shape[-1]
  sel = _selected(_desc_last(target, mask), k, n, mask)
  pos = jnp.cumsum(sel, -1) - 1  # 0-based position among the selected, in query order
  disc = 1.0 / jnp.log2(pos.astype(jnp.float32) + 2.0)
  dcg = jnp.sum(jnp.where(sel, pred * disc, 0.0), -1)
  ideal = _dcg(-jnp.sort(-jnp.where(sel, target, 0.0), axis=-1), k)
  return _ratio(dcg, ideal, 0.0)


def ndcg_recbole_at_k(pred: jax.Array, target: jax.Array, mask: jax.Array, k: int) -> jax.Array:
  """nDCG@k as RecBole-MetaRec computes it on ratings: binary relevance, the true top k relevant.

  The ``k`` items with the highest true ratings are relevant (``rel = 1``), the
  rest not. ``DCG@k = sum_{r=1..k} rel_(r) / log2(r + 1)`` over the ranking by
  ``pred``; ``IDCG@k = sum_{r=1..min(|rel|, k)} 1 / log2(r + 1)``. How high a
  rating is beyond making the top ``k`` does not matter. Ties in ratings and in
  ``pred`` (``torch.topk``, implementation-defined there) go to the earlier
  query position. RecBole-MetaRec takes the relevant set with ``max(topk)``;
  here it is ``k`` itself (the same when one cutoff is reported, as in its
  ``topk: 5``). A task with no valid item scores 0.

  Sources: nuster1128/RecBole-MetaRec ``recbole_metarec/MetaCollector.py``
  (``eval_collect``: ``pos_matrix`` from ``torch.topk(data_label, max(topk))``),
  RUCAIBox/RecBole ``recbole/evaluator/metrics.py`` (``NDCG.metric_info``).
  """
  n = target.shape[-1]
  rel = _selected(_desc_first(target, mask), k, n, mask).astype(jnp.float32)
  dcg = _dcg(jnp.take_along_axis(rel, _desc_first(pred, mask), -1), k)
  ideal = _cum_discounts(n, k)[rel.sum(-1).astype(jnp.int32)]
  return _ratio(dcg, ideal, 0.0)


_NDCG = {
    "ndcg": ndcg_at_k,
    "ndcg_tanp": ndcg_tanp_at_k,
    "ndcg_linear": ndcg_linear_at_k,
    "ndcg_mamo": ndcg_mamo_at_k,
    "ndcg_melu_tf": ndcg_melu_tf_at_k,
    "ndcg_metahin": ndcg_metahin_at_k,
    "ndcg_recbole": ndcg_recbole_at_k,
}
assert tuple(_NDCG) == NDCG_FAMILIES


def hit_rate_at_k(scores: jax.Array, labels: jax.Array, mask: jax.Array, k: int) -> jax.Array:
  """1 if any positive label is among the top-k valid items by score, else 0."""
  s = jnp.where(mask, scores, -jnp.inf)
  order = jnp.argsort(-s, axis=-1, stable=True)
  top_labels = jnp.take_along_axis(jnp.where(mask, labels, 0), order, -1)[..., :k]
  return (top_labels.sum(-1) > 0).astype(jnp.float32)


def _unknown(name) -> ValueError:
  return ValueError(f"unknown metric {name!r}; known: {', '.join(METRIC_FAMILIES)} "
                    "(K: an integer cutoff below the query size)")


def compute_metrics(pred: jax.Array, target: jax.Array, mask: jax.Array,
                    names: tuple[str, ...] = METRICS) -> dict[str, jax.Array]:
  """Per-task values of the named metrics (``mae``, ``rmse``, and ``<family>@K``
  for each family of ``NDCG_FAMILIES``)."""
  mask = mask.astype(jnp.float32)
  out = {}
  for name in names:
    if name == "mae":
      out[name] = mae(pred, target, mask)
    elif name == "rmse":
      out[name] = rmse(pred, target, mask)
    else:
      family, at, k = name.partition("@")
      if not at or family not in _NDCG:
        raise _unknown(name)
      out[name] = _NDCG[family](pred, target, mask > 0, int(k))
  return out


def check_metric_names(names, query_size: int) -> None:
  """Raises if a metric is unknown or an nDCG cutoff is not below the query size."""
  for name in names:
    if name in ("mae", "rmse"):
      continue
    family, at, cutoff = name.partition("@")
    if family in _NDCG and at:
      try:
        k = int(cutoff)
      except ValueError:
        raise ValueError(f"metric {name!r}: the cutoff must be an integer, e.g. {family}@3") from None
      if not 0 < k < query_size:
        raise ValueError(f"metric {name!r}: k must lie in [1, query_size) = [1, {query_size}); "
                         "ranking k >= query size items measures nothing")
      continue
    if family in _NDCG:
      raise ValueError(f"metric {name!r}: name a cutoff, e.g. {family}@3")
    raise _unknown(name)
