"""Meta-path neighbourhoods of items as fixed-width padded tables, and the per-task contexts built from them.

MetaHIN (Lu, Fang, Shi, KDD 2020) describes a user by the items reachable from
the items the user rated along meta-paths of a heterogeneous information
network. On MovieLens with MeLU's side information the meta-paths are

* ``U-M``: the user's rated movies (the support set of a task);
* ``U-M-U-M``: movies co-rated with a rated movie by some user;
* ``U-M-A-M`` / ``U-M-D-M``: movies sharing an actor / a director with a
  rated movie (here ``U-M-actor-M``, ``U-M-director-M``: any multi-valued or
  categorical item field can close a path).

Everything past ``U-M`` is a property of an item, so it is precomputed once
per seed as a table ``[num_items, K]`` of neighbour ids (`MetaPathTables`):
per item up to ``K`` distinct neighbours, drawn uniformly without
replacement with a seeded ``np.random.Generator``, padded with `PAD` (-1).
The tables are built with vectorised numpy and scipy.sparse (no Python loop
per item or per rating; item blocks bound the memory of the co-occurrence
products) from

* the meta-training ratings only (``ScenarioSplit.train``): no validation or
  test user's rating links two items;
* the item side information (the field's ids; 0 = unknown / padding links
  nothing);

and a neighbour is always an item with a meta-training rating (the *pool*),
so a cold item is never anyone's neighbour.

On the device, `context_bags` turns one task's support set into a bag (a
count vector over the catalogue) per meta-path: the support items (``U-M``),
and for every other path the support items plus their table neighbours
(the reference code adds each support item to its own context so that no
context is empty). The scored items (a task's query) are then zeroed in every
bag, so a task's query items never appear in its contexts.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from metarec_jax.data.interactions import FeatureTable, Interactions

PAD = -1  # padding of the neighbour tables
USER_ITEM = "U-M"
CO_RATED = "U-M-U-M"
BLOCK_ENTRIES = 1 << 22  # at most this many co-occurrence entries live at once while sampling


def field_path(field: str) -> str:
  """The name of the meta-path closed by item field ``field`` (``U-M-actor-M``)."""
  return f"U-M-{field}-M"


@dataclasses.dataclass(frozen=True)
class MetaPathTables:
  """The meta-paths of one seed and the neighbour tables of those past ``U-M``.

  Attributes:
    names: every meta-path, ``U-M`` first (it has no table: its context is
      the support set itself).
    tables: ``int32 [len(names) - 1, num_items, K]`` neighbour ids, `PAD`
      past each row's neighbours; table ``p`` belongs to ``names[p + 1]``.
    pool: ``bool [num_items]`` the items that may be neighbours (those with
      a meta-training rating).
  """

  names: tuple[str, ...]
  tables: np.ndarray
  pool: np.ndarray

  @property
  def num_items(self) -> int:
    return int(self.pool.shape[0])

  @property
  def width(self) -> int:
    """``K``: neighbours per item and path."""
    return int(self.tables.shape[-1])

  def table(self, name: str) -> np.ndarray:
    """The ``[num_items, K]`` table of meta-path ``name`` (not ``U-M``)."""
    return self.tables[self.names.index(name) - 1]

  def on_device(self) -> jax.Array:
    """The tables as one device array ``int32 [P - 1, num_items, K]``."""
    return jnp.asarray(self.tables, jnp.int32)


def _rng(seed: int, name: str) -> np.random.Generator:
  """One generator per (seed, path): adding or dropping a path changes no other path's sample."""
  return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode())])


def _sample_block(adj: sp.csr_matrix, first_row: int, k: int, rng: np.random.Generator, out: np.ndarray) -> None:
  """Writes up to ``k`` uniformly drawn distinct column ids of each row of ``adj`` into ``out[first_row + r]``.

  ``adj``'s rows are items ``first_row..``; its diagonal (the item itself)
  is skipped.
  """
  adj = adj.tocsr()
  adj.sum_duplicates()
  adj.sort_indices()  # a canonical entry order: the same draw for the same matrix
  counts = np.diff(adj.indptr)
  rows = np.repeat(np.arange(adj.shape[0]), counts)
  cols = adj.indices
  keep = cols != rows + first_row
  rows, cols = rows[keep], cols[keep]
  if not len(rows):
    return
  keys = rng.random(len(rows))
  order = np.lexsort((keys, rows))  # by row, then by a random key: a random permutation within each row
  rows, cols = rows[order], cols[order]
  starts = np.searchsorted(rows, np.arange(adj.shape[0]))
  rank = np.arange(len(rows)) - starts[rows]
  take = rank < k
  out[first_row + rows[take], rank[take]] = cols[take]


def _sample_products(left: sp.csr_matrix, right_t: sp.csr_matrix, k: int, rng: np.random.Generator) -> np.ndarray:
  """Samples up to ``k`` neighbours per row of ``left @ right_t.T`` (nonzero = linked), block by block."""
  n, num_cols = left.shape[0], right_t.shape[0]
  out = np.full((n, k), PAD, np.int32)
  right = right_t.T.tocsr()
  block = max(1, min(n, BLOCK_ENTRIES // max(num_cols, 1)))
  for start in range(0, n, block):
    _sample_block(left[start:start + block] @ right, start, k, rng, out)
  return out


def _binary(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
  m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=shape)
  m.sum_duplicates()
  m.data[:] = 1.0
  return m


def training_pool(train: Interactions, num_items: int) -> np.ndarray:
  """``bool [num_items]``: the items with at least one meta-training rating."""
  return np.bincount(train.item, minlength=num_items) > 0


def co_rated_neighbours(train: Interactions, num_items: int, k: int, rng: np.random.Generator) -> np.ndarray:
  """``U-M-U-M``: per item, up to ``k`` distinct other items rated by a user who rated it.

  Args:
    train: the meta-training ratings (the only ratings that link items).
    num_items: rows of the table.
    k: neighbours per item.
    rng: the draw.

  Returns:
    ``int32 [num_items, k]``, `PAD`-padded.
  """
  num_users = int(train.user.max()) + 1 if len(train) else 1
  ui = _binary(train.user, train.item, (num_users, num_items))
  return _sample_products(ui.T.tocsr(), ui.T.tocsr(), k, rng)


def shared_value_neighbours(values: np.ndarray, k: int, rng: np.random.Generator,
                            pool: np.ndarray | None = None) -> np.ndarray:
  """``U-M-X-M``: per item, up to ``k`` distinct other items sharing a value of a field.

  Args:
    values: the field's ids per item: ``[num_items]`` (categorical) or
      ``[num_items, width]`` (multi-valued); 0 is unknown / padding and links
      nothing.
    k: neighbours per item.
    rng: the draw.
    pool: ``bool [num_items]``: only these items may be neighbours (None: all).

  Returns:
    ``int32 [num_items, k]``, `PAD`-padded.
  """
  values = np.asarray(values)
  if values.ndim == 1:
    values = values[:, None]
  if values.ndim != 2 or not np.issubdtype(values.dtype, np.integer):
    raise ValueError(f"shared_value_neighbours needs integer ids [num_items] or [num_items, width], got "
                     f"{values.dtype} {values.shape}")
  n = values.shape[0]
  rows = np.repeat(np.arange(n), values.shape[1])
  ids = values.ravel()
  has = ids > 0
  incidence = _binary(rows[has], ids[has], (n, int(values.max(initial=0)) + 1))
  candidates = incidence
  if pool is not None:
    candidates = sp.diags(np.asarray(pool, np.float32)) @ incidence  # rows of non-pool items emptied
  return _sample_products(incidence, candidates.tocsr(), k, rng)


def build_metapath_tables(train: Interactions, items: FeatureTable, *, k: int, seed: int,
                          fields: Sequence[str] = ("actor", "director"), co_rated: bool = True) -> MetaPathTables:
  """The meta-paths the data has and their neighbour tables.

  ``U-M`` is always a path; ``U-M-U-M`` when ``co_rated``; ``U-M-<field>-M``
  for each of ``fields`` the item table has as a categorical or multi-valued
  field (the others are skipped: synthetic data has no actor or director).

  Args:
    train: the meta-training ratings.
    items: the item side information.
    k: neighbours per item and path (``K``).
    seed: seed of the draws (one generator per path).
    fields: item fields that close a ``U-M-X-M`` path.
    co_rated: build ``U-M-U-M``.

  Returns:
    The `MetaPathTables`.

  Raises:
    ValueError: ``k < 1``, or a named field is dense.
  """
  if k < 1:
    raise ValueError(f"neighbours per item must be >= 1, got {k}")
  n = items.num_rows
  pool = training_pool(train, n)
  kinds = {s.name: s.kind for s in items.specs}
  names, tables = [USER_ITEM], []
  if co_rated:
    names.append(CO_RATED)
    tables.append(co_rated_neighbours(train, n, k, _rng(seed, CO_RATED)))
  for field in fields:
    if field not in kinds:
      continue
    if kinds[field] not in ("categorical", "multi"):
      raise ValueError(f"item field {field!r} is {kinds[field]}; a meta-path needs categorical or multi-valued ids")
    name = field_path(field)
    names.append(name)
    tables.append(shared_value_neighbours(items.columns[field], k, _rng(seed, name), pool))
  stacked = np.stack(tables).astype(np.int32) if tables else np.zeros((0, n, k), np.int32)
  return MetaPathTables(tuple(names), stacked, pool)


def context_bags(tables: jax.Array, support_items: jax.Array, weights: jax.Array, num_items: int,
                 exclude: jax.Array | None = None) -> jax.Array:
  """One task's meta-path contexts as bags over the catalogue (traceable; vmap it over tasks).

  Args:
    tables: ``int32 [P - 1, num_items, K]`` (`MetaPathTables.on_device`).
    support_items: ``int32 [S]`` the task's support items.
    weights: ``float [S]``: 1 for the support entries that are the user's
      items (valid, and positive under implicit feedback), 0 else.
    num_items: the catalogue size.
    exclude: ``int32 [N]`` item ids zeroed in every bag (the scored items);
      None: none.

  Returns:
    ``float32 [P, num_items]``: bag 0 counts the support items (``U-M``),
    bag ``p`` the support items plus their neighbours on path ``p``; an item
    reached from two support items counts twice (the reference's pooled mean
    over the concatenated contexts).
  """
  w = weights.astype(jnp.float32)
  own = jnp.zeros((num_items,), jnp.float32).at[support_items].add(w)
  nb = tables[:, support_items]                                    # [P-1, S, K]
  valid = nb >= 0
  nb_w = jnp.where(valid, w[None, :, None], 0.0)
  rest = jax.vmap(lambda ids, ws: jnp.zeros((num_items,), jnp.float32).at[ids.ravel()].add(ws.ravel()))(
      jnp.where(valid, nb, 0), nb_w)
  bags = jnp.concatenate([own[None], own[None] + rest], axis=0)
  if exclude is not None:
    bags = bags.at[:, exclude].set(0.0)
  return bags


__all__ = ["CO_RATED", "MetaPathTables", "PAD", "USER_ITEM", "build_metapath_tables", "co_rated_neighbours",
           "context_bags", "field_path", "shared_value_neighbours", "training_pool"]
