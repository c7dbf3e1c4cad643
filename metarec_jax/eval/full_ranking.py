"""Full-ranking metrics over a catalogue: Recall@K, NDCG@K, Precision@K and AUC.

The item-cold benchmark of ALDI and LLM-InS / ColdLLM (`data.splits.split_cold_items_ranking`)
ranks, per user, *every* item of a catalogue (the cold-test items, or all warm
items) rather than each positive against sampled negatives. Per user the
inputs are

* ``scores [C]``: the model's score of every catalogue item;
* ``relevant [C]``: the user's held-out positives in the catalogue;
* ``valid [C]``: the candidates; ``False`` for the items the ranking
  excludes (the user's training items, in the warm ranking over all items).
  An excluded item is neither ranked nor relevant.

Definitions (``R`` = the user's relevant valid items, ``rank`` 0-based among
the valid items by descending score):

* ``recall@K = |top-K ∩ R| / |R|``: the denominator is ``|R|``, not
  ``min(K, |R|)``, as in the ALDI / LLM-InS code; a user with more than K
  relevant items cannot reach 1.
* ``precision@K = |top-K ∩ R| / K``.
* ``ndcg@K = DCG@K / IDCG@K`` with ``DCG@K = Σ_{r ∈ R, rank(r) < K}
  1 / log2(rank(r) + 2)`` and ``IDCG@K`` the DCG of ``min(K, |R|)`` relevant
  items at the top.
* ``auc``: the share of (relevant, non-relevant valid) pairs ranked in order,
  ties counting one half (Mann-Whitney); the selection value of validation.

**Ties** are broken uniformly at random and every metric is its *expectation*
over that draw (as `eval.ranking` does for sampled candidates), so a constant
scorer gets exactly a random ranking's value and the result does not depend
on item order. By linearity only each item's marginal rank matters: an item
with ``g`` valid items scored above it and ``e`` others tied with it lands at
each rank ``g .. g + e`` with probability ``1 / (e + 1)``.

The mean runs over the users with at least one relevant valid item. All of it
is vectorised: per chunk of users one sort of the scores and a binary search
per item (O(C log C) per user); `score_full_ranking` walks the users in
chunks of ``chunk`` rows so memory stays at ``O(chunk × C)``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

FULL_RANKING_FAMILIES = ("recall", "ndcg", "precision")
FULL_RANKING_METRICS = ("auc", "recall@20", "ndcg@20")


def check_full_ranking_names(names) -> None:
  """Raises ``ValueError`` for a name that is not ``auc``, ``recall@K``, ``ndcg@K`` or ``precision@K`` (K >= 1)."""
  for name in names:
    if name == "auc":
      continue
    head, _, tail = name.partition("@")
    if head in FULL_RANKING_FAMILIES and tail.isdigit() and int(tail) >= 1:
      continue
    raise ValueError(f"metric {name!r} is not a full-ranking metric; with data.protocol=cold_items_ranking use "
                     "auc, recall@K, ndcg@K or precision@K (e.g. --set eval.metrics=recall@20,ndcg@20)")


def tie_counts(scores: jax.Array, valid: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Per catalogue position: valid items scored higher, valid others scored equal, and valid items in all.

  Args:
    scores: ``[T, C]`` float scores (finite).
    valid: ``[T, C]`` bool candidates.

  Returns:
    ``(n_gt [T, C], n_eq [T, C], n_valid [T])`` as float32 (``n_gt`` and
    ``n_eq`` are meaningful at valid positions only).
  """
  s = jnp.where(valid, scores.astype(jnp.float32), -jnp.inf)
  srt = jnp.sort(s, axis=-1)
  right = jax.vmap(lambda a, v: jnp.searchsorted(a, v, side="right"))(srt, s)
  left = jax.vmap(lambda a, v: jnp.searchsorted(a, v, side="left"))(srt, s)
  c = s.shape[-1]
  n_valid = jnp.sum(valid, -1).astype(jnp.float32)
  n_gt = (c - right).astype(jnp.float32)
  n_eq = (right - left - 1).astype(jnp.float32)
  return n_gt, n_eq, n_valid


def _discounts(k: int) -> jax.Array:
  """``D[m] = Σ_{r < m} 1 / log2(r + 2)`` for ``m = 0..k``."""
  return jnp.concatenate([jnp.zeros(1), jnp.cumsum(1.0 / jnp.log2(jnp.arange(k, dtype=jnp.float32) + 2.0))])


def full_ranking_metrics(scores: jax.Array, relevant: jax.Array, valid: jax.Array, names) -> tuple[dict, jax.Array]:
  """Per-user values of the named metrics (expected over random tie-breaking).

  Args:
    scores: ``[T, C]`` scores of the catalogue items.
    relevant: ``[T, C]`` bool (or 0/1) held-out positives.
    valid: ``[T, C]`` bool candidates (``False``: excluded).
    names: ``auc``, ``recall@K``, ``ndcg@K``, ``precision@K``.

  Returns:
    ``(name -> [T], has_relevant [T])``; users without a relevant valid item
    get 0 and ``has_relevant`` False.
  """
  valid = valid.astype(bool)
  rel = (relevant > 0) & valid
  relf = rel.astype(jnp.float32)
  n_gt, n_eq, n_valid = tie_counts(scores, valid)
  n_rel = jnp.sum(relf, -1)
  has = n_rel > 0
  out = {}
  for name in names:
    if name == "auc":
      below = n_valid[:, None] - n_gt - n_eq - 1.0
      midrank = below + 1.0 + 0.5 * n_eq                       # 1-based ascending, ties averaged
      u = jnp.sum(relf * midrank, -1) - n_rel * (n_rel + 1.0) / 2.0
      n_neg = n_valid - n_rel
      out[name] = jnp.where(n_neg > 0, u / jnp.maximum(n_rel * n_neg, 1.0), 0.5)
      continue
    head, _, tail = name.partition("@")
    k = int(tail)
    if head in ("recall", "precision"):
      p_top = jnp.clip((k - n_gt) / (n_eq + 1.0), 0.0, 1.0)   # P(rank < k) under random tie-breaking
      hits = jnp.sum(relf * p_top, -1)
      out[name] = hits / jnp.maximum(n_rel, 1.0) if head == "recall" else hits / k
    elif head == "ndcg":
      d = _discounts(k)
      lo = jnp.minimum(n_gt, k).astype(jnp.int32)
      hi = jnp.minimum(n_gt + n_eq + 1.0, k).astype(jnp.int32)
      gain = (d[hi] - d[lo]) / (n_eq + 1.0)                  # E[1/log2(rank+2) · 1(rank < k)]
      idcg = d[jnp.minimum(n_rel, k).astype(jnp.int32)]
      out[name] = jnp.sum(relf * gain, -1) / jnp.maximum(idcg, 1e-12)
    else:
      raise ValueError(f"unknown full-ranking metric {name!r}")
  return {k: jnp.where(has, v, 0.0) for k, v in out.items()}, has


@functools.partial(jax.jit, static_argnames=("names",))
def _chunk(scores, relevant, valid, names):
  return full_ranking_metrics(scores, relevant, valid, names)


def score_full_ranking(scores, relevant, valid, names, chunk: int = 256) -> dict[str, float]:
  """Mean full-ranking metrics over the users with a relevant item, in chunks of ``chunk`` users.

  Args:
    scores: ``[T, C]`` scores (host or device array).
    relevant: ``[T, C]`` held-out positives.
    valid: ``[T, C]`` candidates.
    names: metric names (`check_full_ranking_names`).
    chunk: users per jitted call (padded to equal chunks: one compile).

  Returns:
    name -> mean, and ``tasks``: the users averaged over.

  Raises:
    FloatingPointError: a score is NaN or infinite.
  """
  names = tuple(names)
  check_full_ranking_names(names)
  scores = np.asarray(scores, np.float32)
  if not np.isfinite(scores).all():
    raise FloatingPointError("full ranking: the model produced non-finite scores")
  relevant, valid = np.asarray(relevant) > 0, np.asarray(valid, bool)
  t = scores.shape[0]
  chunk = max(1, min(chunk, t))
  pad = -t % chunk
  if pad:
    scores = np.pad(scores, ((0, pad), (0, 0)))
    relevant = np.pad(relevant, ((0, pad), (0, 0)))
    valid = np.pad(valid, ((0, pad), (0, 0)))
  sums = {n: 0.0 for n in names}
  count = 0
  for start in range(0, t + pad, chunk):
    sl = slice(start, start + chunk)
    vals, has = _chunk(scores[sl], relevant[sl], valid[sl], names)
    has = np.asarray(has)
    count += int(has.sum())
    for n in names:
      sums[n] += float(np.asarray(vals[n], np.float64)[has].sum())
  out = {n: (sums[n] / count if count else float("nan")) for n in names}
  out["tasks"] = count
  return out


__all__ = ["FULL_RANKING_FAMILIES", "FULL_RANKING_METRICS", "check_full_ranking_names", "tie_counts",
           "full_ranking_metrics", "score_full_ranking"]
