"""Task-local embedding tables: adapt only the rows a task can touch.

MAML that adapts embedding tables would keep, per task and per inner step, a
fast copy of every table (8,030 actors × 32 for MeLU's ML-1M), though a task
with 100 items reads at most a few hundred rows. A task's loss depends on a
table only through the rows its user and items index, and the inner gradient
of every other row is zero, so adapting the gathered rows ``E[rows]`` is the
same computation as adapting ``E``: same fast rows, same query loss, same
meta-gradient (it flows back through the gather). `localise` rewrites one
task into those coordinates:

* the task's items become positions ``0..P-1`` of gathered item columns, the
  user becomes id 0 of gathered user columns;
* every adapted table ``extractor/{user,item}/<field>/embedding`` becomes the
  rows its field's ids use (``jnp.unique`` with a static size, so it jits and
  vmaps), and the field's ids become indices into those rows. Local row 0 is
  always global row 0, so multi-hot padding (id 0) stays padding.

Tests check that local and global adaptation give the same meta-gradients.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

import jax
import jax.numpy as jnp

from metarec_jax.types import Features

Flat = dict[str, jax.Array]

EMBEDDING_PATH = re.compile(r"^extractor/(user|item)/([^/]+)/embedding$")


def local_table_paths(adapted: Flat, features: Features) -> tuple[str, ...]:
  """The adapted leaves that are embedding tables of a feature column."""
  out = []
  for path in adapted:
    m = EMBEDDING_PATH.match(path)
    if m and m.group(2) in (features.user if m.group(1) == "user" else features.item):
      out.append(path)
  return tuple(sorted(out))


def local_rows(ids: jax.Array, vocab_size: int) -> tuple[jax.Array, jax.Array]:
  """Distinct ids of ``ids`` (row 0 always first) and each id's local index.

  Returns:
    ``(rows [U], local_ids)`` with ``U = min(vocab_size, ids.size + 1)``,
    ``rows[local_ids] == ids`` and ``rows[0] == 0``; unused slots repeat 0 and
    no local id points at them.
  """
  flat = ids.reshape(-1)
  size = min(int(vocab_size), flat.size + 1)
  rows, inverse = jnp.unique(jnp.concatenate([jnp.zeros((1,), flat.dtype), flat]), size=size, fill_value=0,
                             return_inverse=True)
  return rows, inverse.reshape(-1)[1:].reshape(ids.shape)


@dataclasses.dataclass(frozen=True)
class LocalTask:
  """One task rewritten onto its own rows.

  Attributes:
    features: item columns gathered for the task's items (position = local
      item id), user columns for its user (local user id 0); localised fields
      hold local row indices.
    user: the local user id (0).
    item_groups: the local ids of each item group passed to `localise`.
    rows: path -> global row ids of each localised table ``[U]``.
  """

  features: Features
  user: jax.Array
  item_groups: tuple[jax.Array, ...]
  rows: dict[str, jax.Array]

  def gather(self, flat: Flat) -> Flat:
    """``flat`` with each localised table (or same-shaped leaf) cut to its rows."""
    return {k: (v[self.rows[k]] if k in self.rows else v) for k, v in flat.items()}


def localise(features: Features, user: jax.Array, item_groups: Sequence[jax.Array],
             table_paths: Sequence[str], vocab_sizes: dict[str, int]) -> LocalTask:
  """Rewrites one task (a user and some groups of item ids) onto local rows.

  Args:
    features: the global feature tables.
    user: the task's user id (scalar).
    item_groups: item id arrays (e.g. support items, query items).
    table_paths: the embedding tables to localise (see `local_table_paths`).
    vocab_sizes: path -> number of rows of that table.
  """
  sizes = [g.size for g in item_groups]
  all_items = jnp.concatenate([g.reshape(-1) for g in item_groups])
  item_cols = {k: v[all_items] for k, v in features.item.items()}
  user_cols = {k: v[user][None] for k, v in features.user.items()}
  rows = {}
  for path in table_paths:
    side, field = EMBEDDING_PATH.match(path).groups()
    cols = user_cols if side == "user" else item_cols
    rows[path], cols[field] = local_rows(cols[field], vocab_sizes[path])
  groups, start = [], 0
  for g, n in zip(item_groups, sizes):
    groups.append(jnp.arange(start, start + n, dtype=jnp.int32).reshape(g.shape))
    start += n
  return LocalTask(features=Features(user=user_cols, item=item_cols), user=jnp.zeros((), jnp.int32),
                   item_groups=tuple(groups), rows=rows)


def scatter_rows(table: jax.Array, rows: jax.Array, values: jax.Array) -> jax.Array:
  """Adds per-task local ``values [T, U, D]`` at ``rows [T, U]`` into a zero table."""
  return jnp.zeros_like(table).at[rows.reshape(-1)].add(values.reshape((-1,) + values.shape[2:]))


__all__ = ["LocalTask", "local_table_paths", "local_rows", "localise", "scatter_rows", "EMBEDDING_PATH"]
