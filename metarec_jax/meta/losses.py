"""Per-set losses: MSE for ratings, BCE and BPR for implicit feedback.

Every loss maps one task's set ``(scores [N], labels [N], mask [N])`` to a
scalar, so the inner and the outer loop use the same function.

Implicit sets use the *grouped* layout that `data.negatives.with_negatives`
builds: ``N = P * (1 + r)``, one group per positive, the positive first and
its ``r`` sampled negatives after it (labels ``1, 0, ..., 0``). Pointwise BCE
ignores the grouping; pairwise BPR compares each positive with the negatives
of its own group. Joining two grouped sets (support + query) keeps the layout.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

LossFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]

LOSSES = ("mse", "bce", "bpr")


def masked_mse(pred: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean squared error over the valid entries (0 when none is valid)."""
  m = mask.astype(pred.dtype)
  return jnp.sum(m * (pred - target) ** 2) / jnp.maximum(jnp.sum(m), 1.0)


def masked_bce(logits: jax.Array, labels: jax.Array, mask: jax.Array) -> jax.Array:
  """Binary cross-entropy of sigmoid(logits) against 0/1 labels, mean over valid entries.

  Computed as ``softplus(s) - y s`` (stable for large |s|).
  """
  m = mask.astype(logits.dtype)
  per = jax.nn.softplus(logits) - labels * logits
  return jnp.sum(m * per) / jnp.maximum(jnp.sum(m), 1.0)


def masked_bpr(scores: jax.Array, mask: jax.Array, group: int) -> jax.Array:
  """Bayesian personalised ranking loss on a grouped set.

  ``-log sigmoid(s_pos - s_neg)`` averaged over the valid (positive, negative)
  pairs of each group; a pair is valid when both entries are.

  Args:
    scores: ``[P * group]`` scores in the grouped layout.
    mask: ``[P * group]`` validity.
    group: ``1 + r`` (a positive and its ``r`` negatives).
  """
  if group < 2:
    raise ValueError(f"BPR needs at least one negative per positive (group {group})")
  s = scores.reshape(-1, group)
  m = mask.reshape(-1, group).astype(scores.dtype)
  pair = m[:, :1] * m[:, 1:]
  per = jax.nn.softplus(-(s[:, :1] - s[:, 1:]))
  return jnp.sum(pair * per) / jnp.maximum(jnp.sum(pair), 1.0)


def make_loss(name: str, negatives_per_positive: int = 0) -> LossFn:
  """The loss ``fn(scores, labels, mask)`` named by ``meta.loss``.

  Args:
    name: ``mse`` (ratings), ``bce`` (pointwise) or ``bpr`` (pairwise).
    negatives_per_positive: ``r`` of the grouped layout (BPR only).

  Raises:
    ValueError: unknown name, or BPR without negatives.
  """
  if name == "mse":
    return masked_mse
  if name == "bce":
    return masked_bce
  if name == "bpr":
    group = 1 + int(negatives_per_positive)
    if group < 2:
      raise ValueError("meta.loss=bpr needs data.negatives_per_positive >= 1")
    return lambda scores, labels, mask: masked_bpr(scores, mask, group)
  raise ValueError(f"meta.loss: unknown loss {name!r}; choose one of {LOSSES}")


__all__ = ["LOSSES", "LossFn", "make_loss", "masked_mse", "masked_bce", "masked_bpr"]
