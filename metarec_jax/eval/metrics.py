"""Masked per-task metrics. Every function maps ``[T, N]`` arrays to ``[T]``.

nDCG@k ranks a task's valid query items by predicted score (ties broken by
position) and uses exponential gains ``2^rating - 1``; a task whose ideal DCG
is 0 scores 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

METRICS = ("mae", "rmse", "ndcg@3", "ndcg@5")


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


def hit_rate_at_k(scores: jax.Array, labels: jax.Array, mask: jax.Array, k: int) -> jax.Array:
  """1 if any positive label is among the top-k valid items by score, else 0."""
  s = jnp.where(mask, scores, -jnp.inf)
  order = jnp.argsort(-s, axis=-1, stable=True)
  top_labels = jnp.take_along_axis(jnp.where(mask, labels, 0), order, -1)[..., :k]
  return (top_labels.sum(-1) > 0).astype(jnp.float32)


def compute_metrics(pred: jax.Array, target: jax.Array, mask: jax.Array,
                    names: tuple[str, ...] = METRICS) -> dict[str, jax.Array]:
  """Per-task values of the named metrics (``mae``, ``rmse``, ``ndcg@K``)."""
  mask = mask.astype(jnp.float32)
  out = {}
  for name in names:
    if name == "mae":
      out[name] = mae(pred, target, mask)
    elif name == "rmse":
      out[name] = rmse(pred, target, mask)
    elif name.startswith("ndcg@"):
      out[name] = ndcg_at_k(pred, target, mask > 0, int(name.split("@")[1]))
    else:
      raise ValueError(f"unknown metric {name!r}; known: mae, rmse, ndcg@K")
  return out


def check_metric_names(names, query_size: int) -> None:
  """Raises if a metric is unknown or an nDCG cutoff is not below the query size."""
  for name in names:
    if name in ("mae", "rmse"):
      continue
    if name.startswith("ndcg@"):
      try:
        k = int(name.split("@")[1])
      except ValueError:
        raise ValueError(f"metric {name!r}: the cutoff must be an integer") from None
      if not 0 < k < query_size:
        raise ValueError(f"metric {name!r}: k must lie in [1, query_size) = [1, {query_size}); "
                         "ranking k >= query size items measures nothing")
      continue
    raise ValueError(f"unknown metric {name!r}; known: mae, rmse, ndcg@K")
