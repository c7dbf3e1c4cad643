"""Negative sampling for implicit feedback, inside the jitted step.

An implicit task holds only its user's positives. Negatives are drawn per
task from ``fold_in(key, user id)`` among a *pool* of candidate items, never
among the items the user interacted with (the ``seen`` matrix: every
interaction of the data set, positive or not). Drawing is Gumbel top-k over
the pool's log-weights, i.e. sampling without replacement: uniform (all
weights equal) or popularity-weighted (weight = training positives + 1).

Sets with negatives use the *grouped* layout of `meta.losses`: every
positive is followed by its ``r`` negatives, labels ``1, 0, ..., 0``, and
the negatives inherit the positive's mask (a padded positive has padded
negatives). Evaluation batches put the query positives' candidates in
``query_items`` (see `implicit_eval_batch` and `CandidateLayout`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from metarec_jax.data.interactions import Interactions
from metarec_jax.data.tasks import TaskBatch, pad_batch

SEEN = "seen"                  # Features.extra: bool [num_users, num_items], every interaction
TRAIN_LOGITS = "train_logits"  # Features.extra: float32 [num_items], log-weights of training negatives
SAMPLINGS = ("uniform", "popularity")
CANDIDATES = ("sampled", "all")


def candidate_modes(spec: str) -> tuple[str, ...]:
  """``eval.candidates`` as modes: ``"sampled"``, ``"all"`` or ``"sampled,all"`` (both)."""
  return tuple(m.strip() for m in str(spec).split(",") if m.strip())


def seen_matrix(interactions: Interactions, num_users: int, num_items: int) -> np.ndarray:
  """``bool [num_users, num_items]``: the user interacted with the item (any value)."""
  seen = np.zeros((num_users, num_items), bool)
  seen[interactions.user, interactions.item] = True
  return seen


def pool_logits(pool: np.ndarray, num_items: int, kind: str = "uniform",
                counts: np.ndarray | None = None) -> np.ndarray:
  """Log-weights of a candidate pool: ``-inf`` outside it.

  Args:
    pool: item ids that may be drawn.
    num_items: catalogue size.
    kind: ``uniform`` (weight 1) or ``popularity`` (weight ``counts + 1``).
    counts: ``[num_items]`` training positives per item (popularity only).
  """
  if kind not in SAMPLINGS:
    raise ValueError(f"data.negative_sampling must be one of {SAMPLINGS}, got {kind!r}")
  out = np.full(num_items, -np.inf, np.float32)
  if kind == "uniform":
    out[pool] = 0.0
  else:
    if counts is None:
      raise ValueError("popularity-weighted sampling needs the training counts")
    out[pool] = np.log(np.asarray(counts, np.float64)[pool] + 1.0)
  return out


def sample_negatives(key: jax.Array, logits: jax.Array, seen_row: jax.Array, num: int) -> tuple[jax.Array, jax.Array]:
  """Draws ``num`` distinct items outside ``seen_row`` with probabilities ∝ ``exp(logits)``.

  Returns:
    ``(items [num], valid [num])``: when fewer than ``num`` items can be drawn,
    the rest are item 0 and invalid.
  """
  g = jax.random.gumbel(key, logits.shape, jnp.float32)
  scores = jnp.where(seen_row, -jnp.inf, logits + g)
  top, items = jax.lax.top_k(scores, num)
  valid = jnp.isfinite(top)
  return jnp.where(valid, items, 0).astype(jnp.int32), valid


def _grouped(pos_items, pos_mask, neg_items, neg_valid):
  """``[P]`` positives + ``[P, r]`` negatives -> flat grouped (items, labels, mask)."""
  items = jnp.concatenate([pos_items[:, None], neg_items], 1)
  labels = jnp.zeros(items.shape, jnp.float32).at[:, 0].set(1.0)
  mask = jnp.concatenate([pos_mask[:, None], pos_mask[:, None] & neg_valid], 1)
  return items.reshape(-1), labels.reshape(-1), mask.reshape(-1)


def _task_negatives(key, user, logits, seen, s_items, s_mask, q_items, q_mask, ratio: int):
  k = jax.random.fold_in(key, user)
  s, q = s_items.shape[0], q_items.shape[0]
  neg, valid = sample_negatives(k, logits, seen[user], (s + q) * ratio)
  sup = _grouped(s_items, s_mask, neg[:s * ratio].reshape(s, ratio), valid[:s * ratio].reshape(s, ratio))
  qry = _grouped(q_items, q_mask, neg[s * ratio:].reshape(q, ratio), valid[s * ratio:].reshape(q, ratio))
  return sup + qry


def with_negatives(batch: TaskBatch, key: jax.Array, logits: jax.Array, seen: jax.Array, ratio: int) -> TaskBatch:
  """Joins every support and query positive with ``ratio`` sampled negatives.

  Each task draws from ``fold_in(key, user id)``: ``(S + Q) * ratio``
  distinct items outside the user's seen row, so a task's support and query
  negatives never repeat each other or any of the user's items. Traceable.

  Args:
    batch: positives only (labels in the ratings fields are ignored: set to 1).
    key: PRNG key of this batch's negatives.
    logits: ``[num_items]`` pool log-weights (`pool_logits`).
    seen: ``bool [num_users, num_items]`` (`seen_matrix`).
    ratio: negatives per positive (``data.negatives_per_positive``).

  Returns:
    A `TaskBatch` in the grouped layout: support ``[S * (1 + ratio)]``, query
    ``[Q * (1 + ratio)]``, labels 1 for positives and 0 for negatives.
  """
  fn = jax.vmap(_task_negatives, in_axes=(None, 0, None, None, 0, 0, 0, 0, None))
  s_i, s_l, s_m, q_i, q_l, q_m = fn(key, batch.user, logits, seen, batch.support_items, batch.support_mask,
                                    batch.query_items, batch.query_mask, ratio)
  return TaskBatch(batch.user, s_i, s_l, s_m, q_i, q_l, q_m)


@dataclasses.dataclass(frozen=True)
class CandidateLayout:
  """How an evaluation batch's ``query_items`` hold each positive's candidates.

  Attributes:
    mode: ``sampled``: ``[Q, 1 + width]`` grouped (each positive, then its own
      ``width`` negatives); ``all``: ``[Q + width]`` (the ``Q`` positives, then
      the ``width`` pool items, masked where the user has seen them).
    query_size: ``Q``.
    width: negatives per positive (sampled) or the pool size (all).
  """

  mode: str
  query_size: int
  width: int

  def split(self, pred: jax.Array, batch: TaskBatch):
    """``(pos [T, Q], pos_mask, neg [T, Q|1, N], neg_mask)`` of predictions on ``batch``."""
    q = self.query_size
    if self.mode == "sampled":
      shape = pred.shape[:-1] + (q, 1 + self.width)
      p, m = pred.reshape(shape), jnp.asarray(batch.query_mask).reshape(shape)
      return p[..., 0], m[..., 0], p[..., 1:], m[..., 1:]
    m = jnp.asarray(batch.query_mask)
    return pred[..., :q], m[..., :q], pred[..., None, q:], m[..., None, q:]

  def describe(self, sampling: str = "uniform") -> str:
    if self.mode == "sampled":
      return (f"each query positive ranked against {self.width} negatives sampled ({sampling}) from the "
              "scenario's items the user never interacted with")
    return ("each query positive ranked against all of the scenario's items the user never interacted "
            f"with ({self.width} items in the catalogue)")


def _eval_task(key, user, s_logits, q_logits, seen, s_items, s_mask, q_items, q_mask, pool,
               ratio: int, width: int, mode: str):
  k_sup, k_qry = jax.random.split(jax.random.fold_in(key, user))
  row = seen[user]
  s = s_items.shape[0]
  neg, valid = sample_negatives(k_sup, s_logits, row, s * ratio)
  sup = _grouped(s_items, s_mask, neg.reshape(s, ratio), valid.reshape(s, ratio))
  if mode == "sampled":
    keys = jax.random.split(k_qry, q_items.shape[0])
    neg, valid = jax.vmap(lambda k: sample_negatives(k, q_logits, row, width))(keys)
    qry = _grouped(q_items, q_mask, neg, valid)
  else:
    items = jnp.concatenate([q_items, pool])
    labels = jnp.concatenate([jnp.ones(q_items.shape, jnp.float32), jnp.zeros(pool.shape, jnp.float32)])
    mask = jnp.concatenate([q_mask, ~row[pool] & q_mask.any()])
    qry = (items, labels, mask)
  return sup + qry


def implicit_eval_batch(batch: TaskBatch, key: jax.Array, *, support_logits: np.ndarray, query_logits: np.ndarray,
                        seen: jax.Array, ratio: int, num_negatives: int, mode: str,
                        chunk: int = 256) -> tuple[TaskBatch, CandidateLayout]:
  """An evaluation batch: support positives with training-style negatives, query candidates.

  Built once per seed (every method then sees the same negatives), in chunks
  of ``chunk`` tasks on the host.

  Args:
    batch: positives-only support/query split of the evaluated tasks.
    key: PRNG key of the evaluation negatives.
    support_logits: pool log-weights of the support negatives (``[num_items]``).
    query_logits: pool log-weights of the query candidates; in ``all`` mode the
      pool is where they are finite.
    seen: ``bool [num_users, num_items]``.
    ratio: support negatives per positive.
    num_negatives: sampled negatives per query positive (``sampled`` mode).
    mode: ``sampled`` or ``all``.
    chunk: tasks per jitted call.
  """
  if mode not in CANDIDATES:
    raise ValueError(f"eval.candidates must be one of {CANDIDATES}, got {mode!r}")
  pool = np.flatnonzero(np.isfinite(np.asarray(query_logits))).astype(np.int32)
  width = num_negatives if mode == "sampled" else len(pool)
  s_logits, q_logits, pool_d = jnp.asarray(support_logits), jnp.asarray(query_logits), jnp.asarray(pool)
  padded, n = pad_batch(batch, chunk)  # host numpy, equal chunks: one compile
  parts = []
  for start in range(0, padded.num_tasks, chunk):
    b = jax.tree_util.tree_map(lambda x: x[start:start + chunk], padded)
    out = _eval_tasks(key, b.user, s_logits, q_logits, seen, b.support_items, b.support_mask, b.query_items,
                      b.query_mask, pool_d, ratio, width, mode)
    parts.append([np.asarray(x) for x in out])
  cols = [np.concatenate(xs)[:n] for xs in zip(*parts)]
  out = TaskBatch(np.asarray(batch.user), *cols)
  return out, CandidateLayout(mode, int(batch.query_items.shape[-1]), int(width))


_eval_tasks = jax.jit(jax.vmap(_eval_task, in_axes=(None, 0, None, None, None, 0, 0, 0, 0, None, None, None, None)),
                      static_argnums=(10, 11, 12))


__all__ = ["SEEN", "TRAIN_LOGITS", "SAMPLINGS", "CANDIDATES", "candidate_modes", "seen_matrix", "pool_logits", "sample_negatives",
           "with_negatives", "CandidateLayout", "implicit_eval_batch"]
