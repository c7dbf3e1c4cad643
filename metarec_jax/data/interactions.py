"""Columnar containers for ratings and side features.

`Interactions` holds one row per (user, item) rating as parallel numpy arrays.
`FeatureTable` holds the side features of one entity kind (users or items) as
one array per field, indexed by the entity's integer id:

* ``categorical``: ``int32 [n]``, ids in ``[0, vocab_size)``; 0 means unknown.
* ``multi``: ``int32 [n, width]``, padded id lists; 0 is padding.
* ``dense``: ``float32 [n, width]``, numeric features.
* ``tokens``: ``int32 [n, width]``, a text's word-piece ids (0 is padding),
  embedded by a sentence encoder (`models.text.EncoderSpec`, see
  `features.tokens`).

No one-hot rows anywhere: an ML-1M item table is a few hundred kilobytes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Mapping

import numpy as np

FieldKind = Literal["categorical", "multi", "dense", "tokens"]
FIELD_KINDS = ("categorical", "multi", "dense", "tokens")


@dataclasses.dataclass(frozen=True)
class FieldSpec:
  """Describes one feature field.

  Attributes:
    name: field name, unique within its table.
    kind: ``categorical``, ``multi`` (multi-hot id list), ``dense`` or
      ``tokens`` (a text's token ids).
    vocab_size: number of ids including the 0 (unknown / padding) id; 0 for
      dense fields.
    width: list length for ``multi`` and ``tokens`` fields, vector width for
      ``dense`` fields, 1 for ``categorical``.
    encoder: ``tokens`` fields: the `models.text.EncoderSpec` that embeds the
      ids (the tokeniser's model); None for the other kinds.
  """

  name: str
  kind: FieldKind
  vocab_size: int = 0
  width: int = 1
  encoder: Any = dataclasses.field(default=None, repr=False)


@dataclasses.dataclass
class FeatureTable:
  """Side features of one entity kind, one array per field.

  Attributes:
    specs: field descriptions, in model input order.
    columns: field name -> array with leading dimension ``num_rows``.
  """

  specs: tuple[FieldSpec, ...]
  columns: dict[str, np.ndarray]

  def __post_init__(self):
    names = [s.name for s in self.specs]
    if len(set(names)) != len(names):
      raise ValueError(f"duplicate field names in FeatureTable: {names}")
    missing = [n for n in names if n not in self.columns]
    if missing:
      raise ValueError(f"FeatureTable has specs without columns: {missing}")
    sizes = {n: len(self.columns[n]) for n in names}
    if len(set(sizes.values())) > 1:
      raise ValueError(f"FeatureTable columns differ in length: {sizes}")
    for spec in self.specs:
      col = self.columns[spec.name]
      if spec.kind == "categorical":
        if col.ndim != 1:
          raise ValueError(f"categorical field {spec.name!r} must be 1-D, got {col.shape}")
      elif spec.kind in ("multi", "dense", "tokens"):
        if col.ndim != 2 or col.shape[1] != spec.width:
          raise ValueError(
              f"{spec.kind} field {spec.name!r} must have shape [n, {spec.width}], got {col.shape}")
      else:
        raise ValueError(f"field {spec.name!r}: unknown kind {spec.kind!r}; kinds are {FIELD_KINDS}")
      if spec.kind == "tokens" and spec.encoder is None:
        raise ValueError(f"tokens field {spec.name!r} needs its encoder (FieldSpec.encoder, a "
                         "models.text.EncoderSpec): see features.tokens.add_tokens_field")
      if spec.kind != "dense" and len(col) and (col.min() < 0 or col.max() >= spec.vocab_size):
        raise ValueError(
            f"field {spec.name!r}: ids must lie in [0, {spec.vocab_size}), "
            f"got [{col.min()}, {col.max()}]")

  @property
  def num_rows(self) -> int:
    return len(self.columns[self.specs[0].name]) if self.specs else 0

  def select(self, names: tuple[str, ...] | list[str]) -> "FeatureTable":
    """Returns a table with only the named fields, in the given order."""
    by_name = {s.name: s for s in self.specs}
    unknown = [n for n in names if n not in by_name]
    if unknown:
      raise KeyError(f"unknown feature fields {unknown}; available: {sorted(by_name)}")
    return FeatureTable(tuple(by_name[n] for n in names), {n: self.columns[n] for n in names})

  def nbytes(self) -> int:
    return int(sum(c.nbytes for c in self.columns.values()))


@dataclasses.dataclass
class Interactions:
  """Ratings as parallel columns.

  Attributes:
    user: ``int32 [n]`` user ids (rows of the user FeatureTable).
    item: ``int32 [n]`` item ids (rows of the item FeatureTable).
    rating: ``float32 [n]`` ratings.
    timestamp: optional ``int64 [n]`` times.
  """

  user: np.ndarray
  item: np.ndarray
  rating: np.ndarray
  timestamp: np.ndarray | None = None

  def __post_init__(self):
    self.user = np.asarray(self.user, np.int32)
    self.item = np.asarray(self.item, np.int32)
    self.rating = np.asarray(self.rating, np.float32)
    n = len(self.user)
    if len(self.item) != n or len(self.rating) != n:
      raise ValueError("Interactions columns must have equal length")
    if self.timestamp is not None:
      self.timestamp = np.asarray(self.timestamp, np.int64)
      if len(self.timestamp) != n:
        raise ValueError("Interactions timestamp column has the wrong length")

  def __len__(self) -> int:
    return len(self.user)

  def subset(self, rows: np.ndarray) -> "Interactions":
    """Returns the rows selected by a boolean mask or an index array."""
    ts = None if self.timestamp is None else self.timestamp[rows]
    return Interactions(self.user[rows], self.item[rows], self.rating[rows], ts)

  def counts_per_user(self, num_users: int) -> np.ndarray:
    return np.bincount(self.user, minlength=num_users)


@dataclasses.dataclass
class Dataset:
  """A rating data set: interactions plus user and item side features.

  Attributes:
    name: short name, used in logs and results.
    interactions: all ratings.
    users: user FeatureTable (row = user id).
    items: item FeatureTable (row = item id).
    rating_scale: (min, max) of valid ratings.
    user_is_cold: optional bool [num_users]; protocols that split by flags use it.
    item_is_cold: optional bool [num_items].
    extras: anything else a generator knows (ground truth of synthetic data).
    scenarios: optional predefined ratings per scenario name (MeLU's four state
      files); protocols that use given scenarios (``melu_states``) read them.
    item_year: optional ``int32 [num_items]`` release year, 0 where unknown
      (the ``temporal`` protocol reads it).
    user_raw_ids: optional ``[num_users]`` id of each user row in the source files.
    item_raw_ids: optional ``[num_items]`` id of each item row in the source files.
    split_options: protocol options chosen by the loader from ``config.data``
      (e.g. ``min_ratings``); `splits.make_split` passes them to the protocol.
    notes: problems found while reading and how they were resolved.
    source: where the data came from (format and path), for logs.
    feedback: ``rating`` (``interactions`` hold ratings) or ``implicit``
      (``interactions`` hold positives only, value 1; see `data.implicit`).
    interacted: implicit data: every interaction of the source, positive or
      not (negatives are never drawn among them); ``None`` for ratings.
  """

  name: str
  interactions: Interactions
  users: FeatureTable
  items: FeatureTable
  rating_scale: tuple[float, float] = (1.0, 5.0)
  user_is_cold: np.ndarray | None = None
  item_is_cold: np.ndarray | None = None
  extras: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
  scenarios: Mapping[str, Interactions] | None = None
  item_year: np.ndarray | None = None
  user_raw_ids: np.ndarray | None = None
  item_raw_ids: np.ndarray | None = None
  split_options: dict = dataclasses.field(default_factory=dict)
  notes: tuple[str, ...] = ()
  source: str = ""
  feedback: str = "rating"
  interacted: Interactions | None = None

  @property
  def num_users(self) -> int:
    return self.users.num_rows

  @property
  def num_items(self) -> int:
    return self.items.num_rows
