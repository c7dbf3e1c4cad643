"""Implicit-feedback metrics: AUC, log-loss, HR@k, nDCG@k, MRR@k.

Each query positive is ranked against its own candidate negatives: a fixed
number of sampled items the user never interacted with (``sampled``), or every
such item of the scenario's catalogue (``all``). Never against the other
query items only: ranking ten positives among themselves saturates.

A positive's rank is ``1 + (negatives scoring higher)``; ties with negatives
are broken uniformly at random and the metrics are their expectation over
that draw, so a model that scores everything equal gets exactly the value of
a random ranking (HR@k = k / (n + 1) with n negatives). Per task, a metric is
the mean over its valid query positives; `ranking_metrics` maps ``[T, ...]``
arrays to ``[T]``.

``recall@K`` and ``precision@K`` (several relevant items per user) rank a
whole catalogue: they belong to the full-ranking protocol
(``data.protocol=cold_items_ranking``, `eval.full_ranking`), which also
scores ``auc`` and ``ndcg@K`` its own way (all of a user's held-out
positives at once). The names are checked here, for both.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

RANKING_METRICS = ("auc", "logloss", "hr@10", "ndcg@10", "mrr@10")
FULL_RANKING_ONLY = ("recall", "precision")  # families scored only by full ranking (`eval.full_ranking`)
LOWER_IS_BETTER = ("logloss",)


def rank_counts(pos: jax.Array, neg: jax.Array, neg_mask: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Per positive: how many valid negatives score higher, equal, and in all.

  Args:
    pos: ``[..., Q]`` scores of the positives.
    neg: ``[..., Q, N]`` each positive's negatives, or ``[..., 1, N]`` shared.
    neg_mask: validity of ``neg`` (same shape).

  Returns:
    ``(n_gt, n_eq, n_neg)``, each ``[..., Q]`` float32.
  """
  m = neg_mask.astype(jnp.float32)
  p = pos[..., None]
  n_gt = jnp.sum(m * (neg > p), -1)
  n_eq = jnp.sum(m * (neg == p), -1)
  n_neg = jnp.broadcast_to(jnp.sum(m, -1), n_gt.shape)
  return n_gt, n_eq, n_neg


def _expected_over_ties(n_gt, n_eq, k: int, gain) -> jax.Array:
  """E[gain(rank)·1(rank <= k)] with the positive placed uniformly among its ties."""
  j = jnp.arange(k, dtype=jnp.float32)
  rank0 = n_gt[..., None] + j  # 0-based rank if it lands j places into its ties
  ok = (j <= n_eq[..., None]) & (rank0 < k)
  return jnp.sum(jnp.where(ok, gain(rank0), 0.0), -1) / (n_eq + 1.0)


def hit_rate(n_gt: jax.Array, n_eq: jax.Array, k: int) -> jax.Array:
  """1 if the positive ranks in the top k (expected over ties)."""
  return _expected_over_ties(n_gt, n_eq, k, lambda r: jnp.ones_like(r))


def ndcg(n_gt: jax.Array, n_eq: jax.Array, k: int) -> jax.Array:
  """``1 / log2(rank + 1)`` if the positive ranks in the top k, else 0 (one relevant item)."""
  return _expected_over_ties(n_gt, n_eq, k, lambda r: 1.0 / jnp.log2(r + 2.0))


def mrr(n_gt: jax.Array, n_eq: jax.Array, k: int) -> jax.Array:
  """``1 / rank`` if the positive ranks in the top k, else 0."""
  return _expected_over_ties(n_gt, n_eq, k, lambda r: 1.0 / (r + 1.0))


def auc(n_gt: jax.Array, n_eq: jax.Array, n_neg: jax.Array) -> jax.Array:
  """Share of the positive's negatives scored below it (ties count one half)."""
  return (n_neg - n_gt - 0.5 * n_eq) / jnp.maximum(n_neg, 1.0)


def log_loss(pos: jax.Array, pos_mask: jax.Array, neg: jax.Array, neg_mask: jax.Array) -> jax.Array:
  """Per task: mean binary cross-entropy of sigmoid(score) over the labelled candidates.

  Positives have label 1, their negatives label 0; the mean runs over all
  valid positives and negatives of the task (``[T, Q]``, ``[T, Q|1, N]`` -> ``[T]``).
  """
  pm = pos_mask.astype(jnp.float32)
  nm = jnp.broadcast_to(neg_mask, neg.shape).astype(jnp.float32)
  total = jnp.sum(pm * jax.nn.softplus(-pos), -1) + jnp.sum(nm * jax.nn.softplus(neg), (-2, -1))
  count = jnp.sum(pm, -1) + jnp.sum(nm, (-2, -1))
  return total / jnp.maximum(count, 1.0)


def cutoff(name: str) -> int:
  """The k of ``hr@k``, ``ndcg@k`` or ``mrr@k``."""
  return int(name.split("@")[1])


def ranking_metrics(pos: jax.Array, pos_mask: jax.Array, neg: jax.Array, neg_mask: jax.Array,
                    names=RANKING_METRICS) -> dict[str, jax.Array]:
  """Per-task values of the named metrics.

  Args:
    pos: ``[T, Q]`` scores of the query positives.
    pos_mask: ``[T, Q]`` which positives are valid.
    neg: ``[T, Q, N]`` per-positive negatives, or ``[T, 1, N]`` shared by all
      of a task's positives.
    neg_mask: validity of ``neg``.
    names: ``auc``, ``logloss``, ``hr@K``, ``ndcg@K``, ``mrr@K``.

  Returns:
    name -> ``[T]``: the mean over the task's valid positives (0 for a task
    without any).
  """
  n_gt, n_eq, n_neg = rank_counts(pos, neg, neg_mask)
  valid = pos_mask.astype(jnp.float32) * (n_neg > 0)
  mean = lambda x: jnp.sum(valid * x, -1) / jnp.maximum(jnp.sum(valid, -1), 1.0)
  out = {}
  for name in names:
    if name == "auc":
      out[name] = mean(auc(n_gt, n_eq, n_neg))
    elif name == "logloss":
      out[name] = log_loss(pos, pos_mask, neg, neg_mask)
    elif name.startswith("hr@"):
      out[name] = mean(hit_rate(n_gt, n_eq, cutoff(name)))
    elif name.startswith("ndcg@"):
      out[name] = mean(ndcg(n_gt, n_eq, cutoff(name)))
    elif name.startswith("mrr@"):
      out[name] = mean(mrr(n_gt, n_eq, cutoff(name)))
    elif name.split("@")[0] in FULL_RANKING_ONLY:
      raise ValueError(f"metric {name!r} ranks a whole catalogue per user: use data.protocol=cold_items_ranking, "
                       "or hr@K with sampled candidates")
    else:
      raise ValueError(f"unknown ranking metric {name!r}; known: auc, logloss, hr@K, ndcg@K, mrr@K")
  return out


def check_ranking_metric_names(names, num_candidates: int) -> None:
  """Raises if a metric is unknown or a cutoff is not below the candidates per positive.

  Args:
    names: metric names.
    num_candidates: candidates each positive is ranked among (itself included);
      0 when unknown before the data is read (``eval.candidates=all``).
  """
  for name in names:
    if name in ("auc", "logloss"):
      continue
    head, _, tail = name.partition("@")
    if head in ("hr", "ndcg", "mrr") + FULL_RANKING_ONLY and tail:
      try:
        k = int(tail)
      except ValueError:
        raise ValueError(f"metric {name!r}: the cutoff must be an integer") from None
      if k < 1 or (num_candidates and k >= num_candidates):
        raise ValueError(f"metric {name!r}: k must lie in [1, {num_candidates}) (the candidates each "
                         "positive is ranked among); a larger k measures nothing")
      continue
    raise ValueError(f"unknown ranking metric {name!r}; known: auc, logloss, hr@K, ndcg@K, mrr@K")


__all__ = ["RANKING_METRICS", "FULL_RANKING_ONLY", "rank_counts", "hit_rate", "ndcg", "mrr", "auc", "log_loss",
           "ranking_metrics", "check_ranking_metric_names"]
