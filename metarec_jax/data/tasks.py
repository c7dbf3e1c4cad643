"""Tasks: one user's ratings, padded, device-resident; batches drawn with a key.

A `TaskSet` stores every task's item ids and ratings padded to a fixed length
``L`` with the true length beside them. A `TaskBatch` is what a meta-train or
evaluation step consumes: per task a support set and a query set, each padded
with a mask. Splitting a task into support and query is a random permutation
of its valid positions drawn from the task's own key, with one uniform number
per position from ``fold_in(key, position)``: extra padding never changes which
ratings land where.

Long histories can be capped (``build_taskset(cap=N)``, ``data.history_cap``):
a user with more than ``N`` ratings keeps a seeded random subset of ``N``
(`cap_histories`), so the padded length is at most ``N`` instead of the
longest history. The subset is fixed per seed and user, not redrawn per batch.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from metarec_jax.data.draws import distinct_below
from metarec_jax.data.interactions import FeatureTable, Interactions
from metarec_jax.types import Features, TaskBatch, TaskSet


def features_from_tables(users: FeatureTable, items: FeatureTable) -> Features:
  """Puts the columns of two feature tables on the default device."""
  return Features(
      user={k: jnp.asarray(v) for k, v in users.columns.items()},
      item={k: jnp.asarray(v) for k, v in items.columns.items()},
  )


def _mix64(x: np.ndarray) -> np.ndarray:
  """SplitMix64's finaliser on ``uint64`` (wrapping arithmetic): a fixed, platform-independent hash."""
  x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
  x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  return x ^ (x >> np.uint64(31))


def history_keys(user: np.ndarray, item: np.ndarray, seed: int) -> np.ndarray:
  """``uint64`` pseudo-random key per (seed, user, item): the order `cap_histories` keeps ratings in."""
  with np.errstate(over="ignore"):
    h = _mix64(np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * np.uint64(0x9E3779B97F4A7C15)
               + np.asarray(user).astype(np.uint64))
    return _mix64(h ^ (np.asarray(item).astype(np.uint64) * np.uint64(0xD1B54A32D192ED03)))


def cap_histories(ratings: Interactions, cap: int, seed: int, max_length: int | None = None) -> Interactions:
  """Keeps a seeded random subset of ``cap`` ratings of every user who has more (vectorised).

  A *random subset*, not a time window: support/query splits here are random
  positions of a task, so a uniform subset keeps a long user's task an
  unbiased sample of their whole history, where the latest ``cap`` ratings
  would tilt every long user towards their recent items (a temporal protocol
  chooses its windows in the split, before this). The subset is the ``cap``
  ratings with the smallest `history_keys` of ``(seed, user, item)``: the
  same seed gives the same subset, whatever else the ratings hold, and a user
  with at most ``cap`` ratings keeps them all. Users with more than
  ``max_length`` ratings are left whole (`build_taskset` drops them).
  """
  if cap < 1:
    raise ValueError(f"history cap must be >= 1, got {cap}")
  if len(ratings) == 0:
    return ratings
  user = np.asarray(ratings.user)
  order = np.lexsort((np.arange(len(user)), history_keys(user, ratings.item, seed), user))
  su = user[order]
  _, starts, counts = np.unique(su, return_index=True, return_counts=True)
  group = np.repeat(np.arange(len(starts)), counts)
  rank = np.arange(len(su)) - starts[group]
  keep_sorted = rank < cap
  if max_length is not None:
    keep_sorted |= counts[group] > max_length
  keep = np.zeros(len(user), bool)
  keep[order] = keep_sorted
  return ratings.subset(keep)


def build_taskset(ratings: Interactions, *, min_length: int = 1, max_length: int | None = None,
                  pad_to: int | None = None, order_by_time: bool = True, cap: int | None = None,
                  seed: int = 0) -> TaskSet:
  """Groups ratings by user into padded tasks (vectorised, no loop per rating).

  Args:
    ratings: the interactions to group.
    min_length: users with fewer ratings are dropped.
    max_length: users with more ratings are dropped (``None``: keep all).
    pad_to: padded length ``L``; defaults to the longest kept task.
    order_by_time: order each task's ratings by timestamp (else by item id).
      The order only fixes the layout; support/query splits are random.
    cap: a user with more ratings (and at most ``max_length``) keeps a
      seeded random subset of ``cap`` of them (`cap_histories`), so tasks are
      at most ``cap`` long. Fixed per seed, not redrawn per batch.
    seed: the seed of that subset.

  Returns:
    A `TaskSet` of numpy arrays (call `jax.device_put` to move it).
  """
  n = len(ratings)
  if n == 0:
    raise ValueError("build_taskset: no ratings to group")
  if cap is not None:
    if cap < min_length:
      raise ValueError(f"build_taskset: cap={cap} is below min_length={min_length}: every capped task "
                       "would be dropped")
    ratings = cap_histories(ratings, cap, seed, max_length)
    n = len(ratings)
  secondary = ratings.timestamp if (order_by_time and ratings.timestamp is not None) else ratings.item
  order = np.lexsort((ratings.item, secondary, ratings.user))
  user = ratings.user[order]
  item = ratings.item[order]
  rating = ratings.rating[order]
  users, starts, counts = np.unique(user, return_index=True, return_counts=True)
  keep = counts >= min_length
  if max_length is not None:
    keep &= counts <= max_length
  if not keep.any():
    raise ValueError(f"build_taskset: no user has between {min_length} and {max_length} ratings")
  longest = int(counts[keep].max())
  length = longest if pad_to is None else pad_to
  if length < longest:
    raise ValueError(f"pad_to={pad_to} is shorter than the longest task ({longest})")
  row_of_user = np.full(users.shape, -1)
  row_of_user[keep] = np.arange(keep.sum())
  group = np.repeat(np.arange(len(users)), counts)
  pos = np.arange(n) - starts[group]
  sel = keep[group]
  rows = row_of_user[group[sel]]
  t = int(keep.sum())
  items = np.zeros((t, length), np.int32)
  vals = np.zeros((t, length), np.float32)
  items[rows, pos[sel]] = item[sel]
  vals[rows, pos[sel]] = rating[sel]
  return TaskSet(user=users[keep].astype(np.int32), items=items, ratings=vals,
                 lengths=counts[keep].astype(np.int32))


def _split_one(key, items, ratings, length, query_size: int, support_size: int):
  positions = jnp.arange(items.shape[0])
  u = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(key, i)))(positions)
  u = jnp.where(positions < length, u, 2.0)
  order = jnp.argsort(u)
  q_idx = order[:query_size]
  s_idx = order[query_size:query_size + support_size]
  q_mask = jnp.arange(query_size) < length
  s_mask = query_size + jnp.arange(support_size) < length
  pad = support_size - s_idx.shape[0]
  if pad > 0:  # the task is shorter than query + support: pad with masked rows
    s_idx = jnp.concatenate([s_idx, jnp.zeros((pad,), s_idx.dtype)])
  return (jnp.where(s_mask, items[s_idx], 0), jnp.where(s_mask, ratings[s_idx], 0.0), s_mask,
          jnp.where(q_mask, items[q_idx], 0), jnp.where(q_mask, ratings[q_idx], 0.0), q_mask)


@functools.partial(jax.jit, static_argnames=("query_size", "support_size"))
def split_tasks(tasks: TaskSet, key: jax.Array, query_size: int, support_size: int) -> TaskBatch:
  """Splits every task of ``tasks`` into support and query sets.

  Each task's split comes from ``fold_in(key, user id)``, so the same user gets
  the same split whatever batch it is drawn in.

  Args:
    tasks: the tasks to split.
    key: PRNG key.
    query_size: query ratings per task (the first ``query_size`` of a random
      permutation of the task's ratings).
    support_size: support slots per task; the next ratings of the permutation
      fill them, masked where the task runs out.

  Returns:
    A `TaskBatch` with one row per task.
  """
  keys = jax.vmap(lambda u: jax.random.fold_in(key, u))(tasks.user)
  split = jax.vmap(_split_one, in_axes=(0, 0, 0, 0, None, None))
  s_items, s_ratings, s_mask, q_items, q_ratings, q_mask = split(
      keys, tasks.items, tasks.ratings, tasks.lengths, query_size, support_size)
  return TaskBatch(tasks.user, s_items, s_ratings, s_mask, q_items, q_ratings, q_mask)


# Task sets with at least this many tasks draw their batch with `draws.distinct_below` (cost independent of
# the set's size); smaller ones keep `jax.random.choice`, whose permutation of every task costs O(n) per step
# but whose draws the published tables were made with (every experiment here has fewer than 8,192 training
# tasks: ML-1M has 6,040 users). Both are uniform ordered samples without replacement.
LARGE_TASK_SET = 8_192


def pick_tasks(key: jax.Array, num_tasks: int, batch_size: int) -> jax.Array:
  """The indices of a batch of ``batch_size`` of ``num_tasks`` tasks: without replacement when they suffice."""
  if batch_size > num_tasks:
    return jax.random.choice(key, num_tasks, (batch_size,), replace=True)
  if num_tasks >= LARGE_TASK_SET:
    return distinct_below(key, num_tasks, batch_size)
  return jax.random.choice(key, num_tasks, (batch_size,), replace=False)


def sample_batch(tasks: TaskSet, key: jax.Array, batch_size: int, query_size: int,
                 support_size: int) -> TaskBatch:
  """Draws ``batch_size`` tasks and a fresh support/query split of each.

  Tasks are drawn without replacement when the set is large enough
  (`pick_tasks`; from `LARGE_TASK_SET` tasks on, at a cost independent of
  the set's size).
  """
  k_pick, k_split = jax.random.split(key)
  idx = pick_tasks(k_pick, tasks.user.shape[0], batch_size)
  picked = jax.tree_util.tree_map(lambda x: x[idx], tasks)
  return split_tasks(picked, k_split, query_size, support_size)


def merge_support_query(batch: TaskBatch) -> tuple[jax.Array, jax.Array, jax.Array]:
  """All of a task's drawn ratings as one set: (items, ratings, mask)."""
  cat = lambda a, b: jnp.concatenate([a, b], axis=-1)
  return (cat(batch.support_items, batch.query_items), cat(batch.support_ratings, batch.query_ratings),
          cat(batch.support_mask, batch.query_mask))


def pad_batch(batch: TaskBatch, multiple: int) -> tuple[TaskBatch, int]:
  """Pads the task axis to a multiple of ``multiple`` with fully masked tasks.

  Works on the host (numpy), so padding compiles nothing.
  """
  n = batch.num_tasks
  target = -(-n // multiple) * multiple
  def pad(x):
    x = np.asarray(x)
    widths = [(0, target - n)] + [(0, 0)] * (x.ndim - 1)
    return np.pad(x, widths)
  return jax.tree_util.tree_map(pad, batch), n
