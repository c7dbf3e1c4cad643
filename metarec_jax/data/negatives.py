"""Negative sampling for implicit feedback, inside the jitted step.

An implicit task holds only its user's positives. Negatives are drawn per
task from ``fold_in(key, user id)`` among a *pool* of candidate items, never
among the items the user interacted with (*seen*: every interaction of the
data set, positive or not), with probabilities proportional to the pool's
weights restricted to the unseen items: uniform (all weights equal) or
popularity-weighted (weight = training positives + 1). Two samplers
(``data.negative_sampler``), equal in distribution for one draw (tested):

* ``matrix`` (default): the seen matrix ``bool [num_users, num_items]`` and a
  Gumbel top-k pass over the pool's log-weights per task (`sample_negatives`):
  *without* replacement within a task, O(items) per task and
  O(users x items) memory.
* ``sorted``: each row's seen items of the pool as a sorted list in CSR form
  (`SortedPool`), no ``[users, items]`` array anywhere. One negative is an
  integer drawn uniformly in the user's *unseen* pool mass, located by a
  binary search over the user's seen items (the unseen mass before each) and,
  when weighted, one more over the pool's integer weight prefix sums
  (`sample_sorted`): exact, *with* replacement (a task's negatives may
  repeat), O(log nnz) per negative (+ O(log pool) when weighted), memory
  O(interactions).

Sets with negatives use the *grouped* layout of `meta.losses`: every
positive is followed by its ``r`` negatives, labels ``1, 0, ..., 0``, and
the negatives inherit the positive's mask (a padded positive has padded
negatives). Evaluation batches put the query positives' candidates in
``query_items`` (see `implicit_eval_batch` and `CandidateLayout`).
"""

from __future__ import annotations

import dataclasses
import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from metarec_jax.data.interactions import Interactions
from metarec_jax.data.draws import randbelow
from metarec_jax.data.tasks import TaskBatch, pad_batch

SEEN = "seen"                  # Features.extra: bool [num_users, num_items], every interaction
TRAIN_LOGITS = "train_logits"  # Features.extra: float32 [num_items], log-weights of training negatives
SAMPLINGS = ("uniform", "popularity")
SAMPLERS = ("matrix", "sorted")  # data.negative_sampler
# Features.extra of the sorted sampler (the training pool, one row per user id): the fields of `SortedPool`.
SORTED_PREFIX = "sorted_"
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


def _split_grouped(neg, valid, s_items, s_mask, q_items, q_mask, ratio: int):
  """A task's ``(S + Q) * ratio`` negatives: the first ``S * ratio`` to the support, the rest to the query."""
  s, q = s_items.shape[0], q_items.shape[0]
  sup = _grouped(s_items, s_mask, neg[:s * ratio].reshape(s, ratio), valid[:s * ratio].reshape(s, ratio))
  qry = _grouped(q_items, q_mask, neg[s * ratio:].reshape(q, ratio), valid[s * ratio:].reshape(q, ratio))
  return sup + qry


def _task_negatives(key, user, logits, seen, s_items, s_mask, q_items, q_mask, ratio: int):
  k = jax.random.fold_in(key, user)
  s, q = s_items.shape[0], q_items.shape[0]
  neg, valid = sample_negatives(k, logits, seen[user], (s + q) * ratio)
  return _split_grouped(neg, valid, s_items, s_mask, q_items, q_mask, ratio)


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


def _eval_candidates(key, user, draw_support, draw_query, s_items, s_mask, q_items, q_mask, pool, pool_unseen,
                     ratio: int, width: int, mode: str):
  """One task's evaluation sets: support positives + ``ratio`` negatives each, query candidates.

  ``draw_support(key, num)`` / ``draw_query(key, num)`` return ``(items,
  valid)`` (the matrix or the sorted sampler); in ``all`` mode the query
  candidates are ``pool``, masked by ``pool_unseen``.
  """
  k_sup, k_qry = jax.random.split(jax.random.fold_in(key, user))
  s = s_items.shape[0]
  neg, valid = draw_support(k_sup, s * ratio)
  sup = _grouped(s_items, s_mask, neg.reshape(s, ratio), valid.reshape(s, ratio))
  if mode == "sampled":
    keys = jax.random.split(k_qry, q_items.shape[0])
    neg, valid = jax.vmap(lambda k: draw_query(k, width))(keys)
    qry = _grouped(q_items, q_mask, neg, valid)
  else:
    items = jnp.concatenate([q_items, pool])
    labels = jnp.concatenate([jnp.ones(q_items.shape, jnp.float32), jnp.zeros(pool.shape, jnp.float32)])
    qry = (items, labels, jnp.concatenate([q_mask, pool_unseen & q_mask.any()]))
  return sup + qry


def _eval_task(key, user, s_logits, q_logits, seen, s_items, s_mask, q_items, q_mask, pool,
               ratio: int, width: int, mode: str):
  row = seen[user]
  return _eval_candidates(key, user, lambda k, n: sample_negatives(k, s_logits, row, n),
                          lambda k, n: sample_negatives(k, q_logits, row, n), s_items, s_mask, q_items, q_mask,
                          pool, ~row[pool], ratio, width, mode)


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
  return _assembled(batch, padded, n, chunk, mode, width, lambda start, b: _eval_tasks(
      key, b.user, s_logits, q_logits, seen, b.support_items, b.support_mask, b.query_items, b.query_mask, pool_d,
      ratio, width, mode))


def _assembled(batch: TaskBatch, padded: TaskBatch, n: int, chunk: int, mode: str, width: int,
               call) -> tuple[TaskBatch, CandidateLayout]:
  """``call(start, chunk_of_padded)`` over equal chunks, joined into the evaluation batch and its layout."""
  parts = []
  for start in range(0, padded.num_tasks, chunk):
    b = jax.tree_util.tree_map(lambda x: x[start:start + chunk], padded)
    parts.append([np.asarray(x) for x in call(start, b)])
  cols = [np.concatenate(xs)[:n] for xs in zip(*parts)]
  out = TaskBatch(np.asarray(batch.user), *cols)
  return out, CandidateLayout(mode, int(batch.query_items.shape[-1]), int(width))


_eval_tasks = jax.jit(jax.vmap(_eval_task, in_axes=(None, 0, None, None, None, 0, 0, 0, 0, None, None, None, None)),
                      static_argnums=(10, 11, 12))


# --------------------------------------------------------------------------- the sorted sampler (no seen matrix)


@dataclasses.dataclass(frozen=True)
class SeenLists:
  """Every user's interacted items (any value), sorted and distinct, in CSR form (host numpy).

  Attributes:
    offsets: ``int64 [num_users + 1]``: user ``u``'s items are ``items[offsets[u]:offsets[u + 1]]``.
    items: ``int32 [nnz]``, ascending within each user.
  """

  offsets: np.ndarray
  items: np.ndarray

  @property
  def num_users(self) -> int:
    return len(self.offsets) - 1

  def row(self, user: int) -> np.ndarray:
    return self.items[self.offsets[user]:self.offsets[user + 1]]


def seen_lists(interactions: Interactions, num_users: int) -> SeenLists:
  """The `SeenLists` of ``interactions``: what `seen_matrix` holds, in O(interactions) memory."""
  user = np.asarray(interactions.user, np.int64)
  item = np.asarray(interactions.item, np.int64)
  if len(user) and (user.min() < 0 or user.max() >= num_users):
    raise ValueError(f"seen_lists: user ids must lie in [0, {num_users}), got [{user.min()}, {user.max()}]")
  order = np.lexsort((item, user))
  user, item = user[order], item[order]
  first = np.ones(len(user), bool)
  first[1:] = (user[1:] != user[:-1]) | (item[1:] != item[:-1])
  user, item = user[first], item[first]
  offsets = np.zeros(num_users + 1, np.int64)
  np.cumsum(np.bincount(user, minlength=num_users), out=offsets[1:])
  return SeenLists(offsets, item.astype(np.int32))


@flax.struct.dataclass
class SortedPool:
  """A candidate pool and, per row (a user, or a task of an evaluation batch), the row's seen items in it.

  Items of the pool are indexed by their *rank* ``k`` (position in ``pool``,
  ascending ids) and carry integer weights ``w_k`` (uniform: 1; popularity:
  training positives + 1); ``C(k) = w_0 + ... + w_{k-1}`` is the pool mass
  before rank ``k`` (``cum``, or ``k`` itself when uniform). Row ``r``'s seen
  pool items are ``ranks[offsets[r]:offsets[r + 1]]`` (ascending); ``before[j]``
  is the *unseen* mass before seen item ``j`` of its row: ``C(ranks[j])`` minus
  the weights of the row's seen items before it. Arrays may be padded past
  their used length (``pool`` past its ``P`` items, ``cum`` past ``P + 1``,
  ``offsets`` with empty rows; ``ranks`` and ``before`` past ``offsets[-1]``,
  always by at least one entry), so shapes can be fixed across seeds and sets.

  Attributes:
    offsets: ``int32 [R + 1]``.
    ranks: ``int32 [>= nnz + 1]``.
    before: ``int32 [>= nnz + 1]``.
    pool: ``int32 [>= P]`` item ids, ascending over the first ``P``.
    total: ``int32 []``: the pool's mass ``C(P)``.
    cum: ``int32 [>= P + 1]`` (``C``, padded with ``total``), or ``None`` for
      uniform weights.
  """

  offsets: jax.Array
  ranks: jax.Array
  before: jax.Array
  pool: jax.Array
  total: jax.Array
  cum: jax.Array | None = None

  def mass(self, k):
    """``C(k)``: the pool mass before rank ``k``."""
    return k if self.cum is None else self.cum[k]


def _pad(x: np.ndarray, size: int, value) -> np.ndarray:
  return np.concatenate([x, np.full(max(size - len(x), 0), value, x.dtype)])


def pow2(n: int) -> int:
  """The smallest power of two >= ``n`` (shapes shared between sets: fewer compiles)."""
  return 1 << max(int(n) - 1, 0).bit_length()


def sorted_pool(seen: SeenLists, pool: np.ndarray, kind: str = "uniform", counts: np.ndarray | None = None,
                users: np.ndarray | None = None, *, min_rows: int = 0, min_nnz: int = 0,
                min_pool: int = 0, round_up: bool = False) -> SortedPool:
  """Builds the `SortedPool` of ``pool`` with one row per user id, or per entry of ``users`` (host numpy).

  Vectorised: O(seen entries of the rows + pool) time and memory.

  Args:
    seen: every user's interacted items (`seen_lists`).
    pool: item ids that may be drawn (any order, repeats ignored).
    kind: ``uniform`` or ``popularity`` (weight ``counts + 1``), as in `pool_logits`.
    counts: ``[num_items]`` training positives per item (popularity only).
    users: the user of each row; ``None``: row ``u`` is user ``u``.
    min_rows, min_nnz, min_pool: pad ``offsets`` to at least ``min_rows + 1``
      entries, ``ranks``/``before`` to ``min_nnz`` and ``pool`` to ``min_pool``
      (``cum`` to ``min_pool + 1``).
    round_up: pad rows, entries and pool further, to powers of two (sets of
      similar size then share one compile).

  Raises:
    ValueError: unknown ``kind``, popularity without counts, an empty pool, or
      a pool mass or a count of seen entries of 2**31 or more (int32 arithmetic).
  """
  if kind not in SAMPLINGS:
    raise ValueError(f"data.negative_sampling must be one of {SAMPLINGS}, got {kind!r}")
  pool = np.unique(np.asarray(pool, np.int64))
  if not len(pool):
    raise ValueError("sorted_pool: the candidate pool is empty")
  if users is None:
    offsets, items = seen.offsets, seen.items
  else:
    users = np.asarray(users, np.int64)
    lengths = seen.offsets[users + 1] - seen.offsets[users]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    row = np.repeat(np.arange(len(users)), lengths)
    items = seen.items[seen.offsets[users][row] + np.arange(offsets[-1]) - offsets[row]]
  num_rows = len(offsets) - 1
  row = np.repeat(np.arange(num_rows), np.diff(offsets))
  rank = np.searchsorted(pool, items)
  in_pool = pool[np.minimum(rank, len(pool) - 1)] == items
  row, rank = row[in_pool], rank[in_pool]
  out_offsets = np.concatenate([[0], np.cumsum(np.bincount(row, minlength=num_rows))])
  if kind == "uniform":
    weight = np.ones(len(pool), np.int64)
  else:
    if counts is None:
      raise ValueError("popularity-weighted sampling needs the training counts")
    weight = np.asarray(counts, np.int64)[pool] + 1
  cum = np.concatenate([[0], np.cumsum(weight)])
  total = int(cum[-1])
  if total >= 2 ** 31:
    raise ValueError(f"sorted_pool: the pool's total weight {total} does not fit int32; use "
                     "data.negative_sampling=uniform or data.negative_sampler=matrix")
  w_seen = weight[rank]
  seen_before = np.cumsum(w_seen) - w_seen                  # seen mass before each entry, over all rows
  seen_before -= seen_before[out_offsets[row]]              # ... within its row
  before = cum[rank] - seen_before
  nnz = len(rank)
  if nnz >= 2 ** 31 - 1:
    raise ValueError(f"sorted_pool: {nnz} seen entries do not fit int32 offsets; use fewer rows (users=...)")
  if round_up:
    min_rows, min_nnz, min_pool = (pow2(max(a, b)) for a, b in ((min_rows, num_rows), (min_nnz, nnz + 1),
                                                                  (min_pool, len(pool))))
  return SortedPool(
      offsets=_pad(out_offsets, min_rows + 1, out_offsets[-1]).astype(np.int32),
      ranks=_pad(rank, max(nnz + 1, min_nnz), 0).astype(np.int32),
      before=_pad(before, max(nnz + 1, min_nnz), total).astype(np.int32),
      pool=_pad(pool, min_pool, 0).astype(np.int32),
      total=np.asarray(total, np.int32),
      cum=None if kind == "uniform" else _pad(cum, min_pool + 1, total).astype(np.int32))


def _upper_bound(sorted_: jax.Array, x: jax.Array, lo: jax.Array, hi: jax.Array) -> jax.Array:
  """Per entry of ``x``: the first index in ``[lo, hi)`` of the ascending ``sorted_`` holding more than ``x``.

  A binary search of ``bit_length(len(sorted_))`` steps (a static trip
  count under jit; a Python-unrolled loop compiles several times slower).
  """
  def halve(_, bounds):
    lo, hi = bounds
    active = lo < hi
    mid = (lo + hi) // 2
    right = sorted_[jnp.minimum(mid, sorted_.shape[0] - 1)] <= x
    return jnp.where(active & right, mid + 1, lo), jnp.where(active & ~right, mid, hi)

  return jax.lax.fori_loop(0, int(sorted_.shape[0]).bit_length(), halve, (lo, hi))[0]


def sample_sorted(key: jax.Array, sp: SortedPool, row: jax.Array, num: int) -> tuple[jax.Array, jax.Array]:
  """Draws ``num`` pool items outside row ``row``'s seen items, *with replacement*, probabilities ∝ weight.

  Exact: each draw is an integer ``u`` uniform in ``[0, unseen mass)``
  (`randbelow`), mapped to the unseen item whose weight interval
  holds it. A binary search over the row's ``before`` counts the row's seen
  items before the target (``J``: those with ``before <= u``); ``u`` plus
  their mass is the target's position in the whole pool's mass, which is its
  rank (uniform) or found by a binary search over ``cum``. The searches take
  ``bit_length`` of their array's length in steps (static under jit): O(log
  nnz) per draw (+ O(log pool) weighted), never O(items). One draw is equal in distribution to the
  first draw of `sample_negatives` (Gumbel top-k) with the same pool, weights
  and seen items; the ``num`` draws are independent, so they may repeat.

  Returns:
    ``(items [num], valid [num])``: when the row has seen every pool item,
    item 0 and invalid.
  """
  sp = jax.tree_util.tree_map(jnp.asarray, sp)
  start, end = sp.offsets[row], sp.offsets[row + 1]
  last = jnp.maximum(end - 1, 0)
  seen_mass = jnp.where(end > start, sp.mass(sp.ranks[last] + 1) - sp.before[last], 0)
  unseen = sp.total - seen_mass
  u = randbelow(key, jnp.maximum(unseen, 1), num)
  lo = _upper_bound(sp.before, u, jnp.full((num,), start, jnp.int32), jnp.full((num,), end, jnp.int32))
  prev = jnp.maximum(lo - 1, 0)
  seen_below = jnp.where(lo > start, sp.mass(sp.ranks[prev] + 1) - sp.before[prev], 0)
  target = u + seen_below
  if sp.cum is None:
    k = target
  else:
    k = _upper_bound(sp.cum, target, jnp.zeros((num,), jnp.int32), jnp.full((num,), sp.cum.shape[0], jnp.int32)) - 1
  valid = jnp.broadcast_to(unseen > 0, (num,))
  return jnp.where(valid, sp.pool[k], 0).astype(jnp.int32), valid


def sorted_extra(sp: SortedPool) -> dict[str, jax.Array]:
  """``Features.extra`` entries of the training pool's `SortedPool` (rows = user ids)."""
  return {SORTED_PREFIX + f.name: jnp.asarray(getattr(sp, f.name)) for f in dataclasses.fields(sp)
          if getattr(sp, f.name) is not None}


def sorted_from_extra(extra: dict) -> SortedPool:
  """The `SortedPool` that `sorted_extra` put in ``extra``."""
  names = [f.name for f in dataclasses.fields(SortedPool)]
  return SortedPool(**{n: extra.get(SORTED_PREFIX + n) for n in names})


def _task_sorted(key, user, sp, s_items, s_mask, q_items, q_mask, ratio: int):
  k = jax.random.fold_in(key, user)
  s, q = s_items.shape[0], q_items.shape[0]
  neg, valid = sample_sorted(k, sp, user, (s + q) * ratio)
  return _split_grouped(neg, valid, s_items, s_mask, q_items, q_mask, ratio)


def with_sorted_negatives(batch: TaskBatch, key: jax.Array, sampler: SortedPool, ratio: int) -> TaskBatch:
  """`with_negatives` with the sorted sampler (`sample_sorted`; rows of ``sampler`` = user ids).

  Same keys and layout as `with_negatives`, but the ``(S + Q) * ratio``
  negatives of a task are drawn *with* replacement: they never are one of the
  user's items, but may repeat each other. Traceable.
  """
  fn = jax.vmap(_task_sorted, in_axes=(None, 0, None, 0, 0, 0, 0, None))
  s_i, s_l, s_m, q_i, q_l, q_m = fn(key, batch.user, sampler, batch.support_items, batch.support_mask,
                                    batch.query_items, batch.query_mask, ratio)
  return TaskBatch(batch.user, s_i, s_l, s_m, q_i, q_l, q_m)


def with_train_negatives(batch: TaskBatch, key: jax.Array, extra: dict, ratio: int) -> TaskBatch:
  """Training negatives with the sampler ``extra`` (``Features.extra``) holds: matrix or sorted.

  Raises:
    KeyError: ``extra`` holds neither sampler (build it with `eval.implicit.implicit_inputs`).
  """
  if SEEN in extra:
    return with_negatives(batch, key, extra[TRAIN_LOGITS], extra[SEEN], ratio)
  if SORTED_PREFIX + "offsets" in extra:
    return with_sorted_negatives(batch, key, sorted_from_extra(extra), ratio)
  raise KeyError(f"implicit feedback needs negative-sampling arrays in Features.extra ({SEEN!r} and "
                 f"{TRAIN_LOGITS!r}, or {SORTED_PREFIX}*); got {sorted(extra)}: build them with "
                 "metarec_jax.eval.implicit.implicit_inputs")


def _eval_task_sorted(key, user, row, sup, qry, s_items, s_mask, q_items, q_mask, pool_mask, ratio: int,
                      width: int, mode: str):
  return _eval_candidates(key, user, lambda k, n: sample_sorted(k, sup, row, n),
                          lambda k, n: sample_sorted(k, qry, row, n), s_items, s_mask, q_items, q_mask,
                          qry.pool[:width], pool_mask, ratio, width, mode)


_eval_tasks_sorted = jax.jit(
    jax.vmap(_eval_task_sorted, in_axes=(None, 0, 0, None, None, 0, 0, 0, 0, 0, None, None, None)),
    static_argnums=(10, 11, 12))


def implicit_eval_batch_sorted(batch: TaskBatch, key: jax.Array, *, seen: SeenLists, support_pool: np.ndarray,
                               query_pool: np.ndarray, sampling: str = "uniform",
                               counts: np.ndarray | None = None, ratio: int, num_negatives: int, mode: str,
                               chunk: int = 256) -> tuple[TaskBatch, CandidateLayout]:
  """`implicit_eval_batch` with the sorted sampler: no ``[users, items]`` array.

  The same keys and layout as the matrix version; sampled negatives (support,
  and each query positive's ``num_negatives``) are drawn *with* replacement
  (`sample_sorted`), so a positive's candidates may repeat. ``all`` mode ranks
  the whole ``query_pool`` with the user's seen items masked, exactly as the
  matrix version (the ``[tasks, pool]`` mask is the candidate list's own size).
  The sorted lists are built for the batch's users only, padded to powers of
  two so sets of similar size share one compile.

  Args:
    batch: positives-only support/query split of the evaluated tasks.
    key: PRNG key of the evaluation negatives.
    seen: every user's interacted items (`seen_lists`).
    support_pool: items the support negatives are drawn from, weighted by ``sampling``.
    query_pool: items the query candidates are drawn (uniformly) from, or
      ranked in ``all`` mode.
    sampling: ``uniform`` or ``popularity`` (support negatives).
    counts: training positives per item (popularity only).
    ratio: support negatives per positive.
    num_negatives: sampled negatives per query positive (``sampled`` mode).
    mode: ``sampled`` or ``all``.
    chunk: tasks per jitted call.
  """
  if mode not in CANDIDATES:
    raise ValueError(f"eval.candidates must be one of {CANDIDATES}, got {mode!r}")
  padded, n = pad_batch(batch, chunk)
  users = np.asarray(padded.user)
  sup = sorted_pool(seen, support_pool, sampling, counts, users, round_up=True)
  qry = sorted_pool(seen, query_pool, "uniform", None, users, round_up=True)
  size = len(np.unique(np.asarray(query_pool)))
  width = num_negatives if mode == "sampled" else size
  if mode == "all":  # True where the task's user has not seen the pool item
    pool_mask = np.ones((len(users), size), bool)
    row = np.repeat(np.arange(len(users)), np.diff(qry.offsets[:len(users) + 1]))
    pool_mask[row, qry.ranks[:len(row)]] = False
  else:
    pool_mask = np.zeros((len(users), 0), bool)
  sup_d, qry_d = jax.tree_util.tree_map(jnp.asarray, sup), jax.tree_util.tree_map(jnp.asarray, qry)
  return _assembled(batch, padded, n, chunk, mode, width, lambda start, b: _eval_tasks_sorted(
      key, b.user, np.arange(start, start + chunk, dtype=np.int32), sup_d, qry_d, b.support_items, b.support_mask,
      b.query_items, b.query_mask, pool_mask[start:start + chunk], ratio, width, mode))


# --------------------------------------------------------------------------- full ranking (cold_items_ranking)

FULL = "full"  # CandidateLayout.mode of full-ranking sets: query_items = the catalogue, labels = relevance


def _ranking_support(key, user, row, draw, s_items, s_mask, ratio: int):
  neg, valid = draw(jax.random.fold_in(key, user), row, s_items.shape[0] * ratio)
  s = s_items.shape[0]
  return _grouped(s_items, s_mask, neg.reshape(s, ratio), valid.reshape(s, ratio))


@functools.partial(jax.jit, static_argnums=(5,))
def _ranking_support_matrix(key, users, s_items, s_mask, logits_seen, ratio: int):
  logits, seen = logits_seen
  draw = lambda k, row, n: sample_negatives(k, logits, seen[row], n)
  return jax.vmap(lambda u, i, m: _ranking_support(key, u, u, draw, i, m, ratio))(users, s_items, s_mask)


@functools.partial(jax.jit, static_argnums=(5,))
def _ranking_support_sorted(key, users, s_items, s_mask, sp, ratio: int):
  draw = lambda k, row, n: sample_sorted(k, sp, row, n)
  rows = jnp.arange(users.shape[0], dtype=jnp.int32)
  return jax.vmap(lambda u, r, i, m: _ranking_support(key, u, r, draw, i, m, ratio))(users, rows, s_items, s_mask)


def _rows_of(users: np.ndarray, size: int) -> np.ndarray:
  row = np.full(size, -1, np.int64)
  row[users] = np.arange(len(users))
  return row


def full_ranking_batch(users: np.ndarray, support: Interactions, relevant: Interactions, exclude: Interactions,
                       catalogue: np.ndarray, key: jax.Array, *, support_size: int, ratio: int,
                       seen: jax.Array | None = None, logits: np.ndarray | None = None,
                       sampler: SortedPool | None = None, chunk: int = 256) -> tuple[TaskBatch, CandidateLayout]:
  """An evaluation batch that ranks a whole catalogue per user (``data.protocol=cold_items_ranking``).

  Row ``t`` is user ``users[t]``. Its support is the user's ``support``
  positives (at most ``support_size``; pass them capped, e.g. with
  `data.tasks.cap_histories`), each joined by ``ratio`` negatives drawn as in
  training (from ``fold_in(key, user)``: ``logits`` and the ``seen`` matrix,
  or the sorted ``sampler`` whose rows are ``users``). Its query is the
  catalogue itself: ``query_items [T, C]`` = ``catalogue`` on every row,
  ``query_ratings`` 1 where the item is one of the user's ``relevant``
  positives, ``query_mask`` False where the item is one of the user's
  ``exclude`` interactions (neither ranked nor relevant).

  Args:
    users: the evaluated users (distinct).
    support: support positives (any users; others are ignored).
    relevant: the held-out positives to find.
    exclude: the interactions whose items the user's ranking leaves out.
    catalogue: item ids ranked (distinct).
    key: PRNG key of the support negatives (fixed per seed and set).
    support_size: support slots per task.
    ratio: negatives per support positive.
    seen: ``bool [num_users, num_items]`` (matrix sampler).
    logits: ``[num_items]`` training pool log-weights (matrix sampler).
    sampler: `SortedPool` with one row per entry of ``users`` (sorted sampler).
    chunk: tasks per jitted negative draw.

  Returns:
    ``(batch, CandidateLayout("full", C, 0))``.
  """
  users = np.asarray(users, np.int64)
  catalogue = np.asarray(catalogue, np.int64)
  t, c = len(users), len(catalogue)
  n_users = int(max(users.max(initial=0), support.user.max(initial=0), relevant.user.max(initial=0),
                    exclude.user.max(initial=0))) + 1
  row = _rows_of(users, n_users)
  n_items = int(max(catalogue.max(initial=0), relevant.item.max(initial=0), exclude.item.max(initial=0))) + 1
  col = np.full(n_items, -1, np.int64)
  col[catalogue] = np.arange(c)
  # Support positives: [T, S], in a fixed (item) order per user.
  sel = row[support.user] >= 0
  su, si = row[support.user[sel]], support.item[sel]
  order = np.lexsort((si, su))
  su, si = su[order], si[order]
  starts = np.searchsorted(su, np.arange(t))
  pos = np.arange(len(su)) - starts[su]
  keep = pos < support_size
  s_items = np.zeros((t, support_size), np.int32)
  s_items[su[keep], pos[keep]] = si[keep]
  s_mask = np.zeros((t, support_size), bool)
  s_mask[su[keep], pos[keep]] = True
  # Query: the catalogue, relevance labels and exclusions.
  q_items = np.broadcast_to(catalogue.astype(np.int32), (t, c)).copy()
  labels = np.zeros((t, c), np.float32)
  r_row, r_col = row[relevant.user], col[np.minimum(relevant.item, n_items - 1)]
  ok = (r_row >= 0) & (r_col >= 0) & (relevant.item < n_items)
  labels[r_row[ok], r_col[ok]] = 1.0
  mask = np.ones((t, c), bool)
  e_sel = exclude.user < n_users
  e_row, e_col = row[exclude.user[e_sel]], col[np.minimum(exclude.item[e_sel], n_items - 1)]
  ok = (e_row >= 0) & (e_col >= 0) & (exclude.item[e_sel] < n_items)
  mask[e_row[ok], e_col[ok]] = False
  labels[~mask] = 0.0
  # Support negatives, in equal chunks (one compile).
  pad = -t % chunk
  pu = np.pad(users.astype(np.int32), (0, pad))
  pi, pm = np.pad(s_items, ((0, pad), (0, 0))), np.pad(s_mask, ((0, pad), (0, 0)))
  parts = []
  for start in range(0, t + pad, chunk):
    sl = slice(start, start + chunk)
    if sampler is not None:
      sub = sorted_rows(sampler, start, chunk)
      out = _ranking_support_sorted(key, pu[sl], pi[sl], pm[sl], sub, ratio)
    else:
      out = _ranking_support_matrix(key, pu[sl], pi[sl], pm[sl], (jnp.asarray(logits), seen), ratio)
    parts.append([np.asarray(x) for x in out])
  sup_items, sup_labels, sup_mask = (np.concatenate(xs)[:t] for xs in zip(*parts))
  batch = TaskBatch(users.astype(np.int32), sup_items, sup_labels, sup_mask, q_items, labels, mask)
  return batch, CandidateLayout(FULL, c, 0)


def sorted_rows(sp: SortedPool, start: int, num: int) -> SortedPool:
  """Rows ``start .. start + num`` of ``sp`` as a `SortedPool` of their own (entries shared, offsets cut)."""
  offsets = np.asarray(sp.offsets)
  idx = np.minimum(np.arange(start, start + num + 1), len(offsets) - 1)
  return sp.replace(offsets=jnp.asarray(offsets[idx]))


__all__ = ["SEEN", "TRAIN_LOGITS", "SAMPLINGS", "SAMPLERS", "CANDIDATES", "candidate_modes", "seen_matrix",
           "pool_logits", "sample_negatives", "with_negatives", "CandidateLayout", "implicit_eval_batch",
           "SeenLists", "seen_lists", "SortedPool", "sorted_pool", "sample_sorted", "sorted_extra",
           "sorted_from_extra", "with_sorted_negatives", "with_train_negatives", "implicit_eval_batch_sorted",
           "randbelow", "pow2", "FULL", "full_ranking_batch", "sorted_rows"]
