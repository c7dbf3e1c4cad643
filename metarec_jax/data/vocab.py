"""String values -> feature ids: categorical, multi-hot and dense columns.

Every encoder is vectorised numpy and returns ids ready for a `FeatureTable`:
id 0 is unknown (categorical) or padding (multi-hot); a vocabulary entry at
position ``p`` gets id ``p + 1``. Values outside a given vocabulary become 0
and are counted, so the reader can report them.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from metarec_jax.data.interactions import FieldSpec
from metarec_jax.data.parsing import lookup, split_lists


@dataclasses.dataclass
class Encoded:
  """One encoded field.

  Attributes:
    spec: the field description.
    column: ``int32 [n]`` (categorical), ``int32 [n, width]`` (multi) or
      ``float32 [n, width]`` (dense).
    vocab: the vocabulary (id ``p + 1`` is ``vocab[p]``); empty for dense.
    unknown: values that were not in the vocabulary, with how often each occurred.
  """

  spec: FieldSpec
  column: np.ndarray
  vocab: tuple[str, ...] = ()
  unknown: dict[str, int] = dataclasses.field(default_factory=dict)


def _unknown_counts(values: np.ndarray, ids: np.ndarray, missing: Sequence[str]) -> dict[str, int]:
  bad = (ids == 0) & ~np.isin(values, np.asarray(list(missing), dtype=str))
  if not bad.any():
    return {}
  names, counts = np.unique(values[bad], return_counts=True)
  return {str(n): int(c) for n, c in zip(names, counts)}


def _ids(values: np.ndarray, vocab: Sequence[str] | None,
         missing: Sequence[str]) -> tuple[np.ndarray, tuple[str, ...]]:
  values = np.asarray(values, dtype=str)
  if vocab is None:
    present = values[~np.isin(values, np.asarray(list(missing), dtype=str))]
    vocab = tuple(str(v) for v in np.unique(present))
  else:
    vocab = tuple(vocab)
  ids = lookup(np.asarray(vocab, dtype=str), values) + 1  # absent -> -1 + 1 = 0
  if len(set(vocab)) != len(vocab):
    raise ValueError("vocabulary has repeated entries")
  return ids.astype(np.int32), vocab


def categorical(name: str, values: Sequence[str] | np.ndarray, vocab: Sequence[str] | None = None, *,
                missing: Sequence[str] = ("",)) -> Encoded:
  """Encodes one value per row.

  Args:
    name: field name.
    values: ``[n]`` strings.
    vocab: the vocabulary; ``None`` builds it from the sorted distinct values.
    missing: values that mean "unknown" (id 0, not reported).

  Returns:
    The `Encoded` field (``vocab_size = len(vocab) + 1``).
  """
  values = np.asarray(values, dtype=str)
  ids, vocab = _ids(values, vocab, missing)
  spec = FieldSpec(name, "categorical", vocab_size=len(vocab) + 1)
  return Encoded(spec, ids, vocab, _unknown_counts(values, ids, missing))


def multi_hot(name: str, values: Sequence[str], delim: str, vocab: Sequence[str] | None = None, *,
              missing: Sequence[str] = ("",), width: int | None = None) -> Encoded:
  """Encodes a delimited list of values per row as a padded id list.

  Repeated values within a row count once; ids within a row are sorted.

  Args:
    name: field name.
    values: ``[n]`` strings, each a ``delim``-separated list (tokens are stripped).
    delim: the list delimiter.
    vocab: the vocabulary; ``None`` builds it from the sorted distinct tokens.
    missing: tokens that mean "nothing" (dropped, not reported).
    width: padded length; defaults to the longest row (at least 1).

  Returns:
    The `Encoded` field.
  """
  n = len(values)
  tokens, counts = split_lists(list(values), delim)
  tok = np.asarray(tokens, dtype=str) if tokens else np.zeros(0, dtype=str)
  ids, vocab = _ids(tok, vocab, missing)
  unknown = _unknown_counts(tok, ids, missing)
  row = np.repeat(np.arange(n, dtype=np.int64), counts)
  keep = ids > 0
  key = np.unique(row[keep] * (len(vocab) + 1) + ids[keep])
  row_k, id_k = key // (len(vocab) + 1), (key % (len(vocab) + 1)).astype(np.int32)
  per_row = np.bincount(row_k, minlength=n)
  longest = int(per_row.max()) if n else 0
  width = max(longest, 1) if width is None else width
  if longest > width:
    raise ValueError(f"field {name!r}: a row has {longest} values, more than width={width}")
  starts = np.concatenate([[0], np.cumsum(per_row)[:-1]]) if n else np.zeros(0, np.int64)
  pos = np.arange(len(key)) - starts[row_k]
  column = np.zeros((n, width), np.int32)
  column[row_k, pos] = id_k
  spec = FieldSpec(name, "multi", vocab_size=len(vocab) + 1, width=width)
  return Encoded(spec, column, vocab, unknown)


def flags_to_multi(name: str, flags: np.ndarray, labels: Sequence[str]) -> Encoded:
  """Encodes a 0/1 indicator matrix (e.g. ML-100K genre columns) as an id list.

  Args:
    name: field name.
    flags: ``[n, k]`` 0/1 matrix; column ``j`` is ``labels[j]``.
    labels: the vocabulary (column ``j`` gets id ``j + 1``).
  """
  flags = np.asarray(flags) > 0
  n, k = flags.shape
  width = max(int(flags.sum(1).max()) if n else 0, 1)
  ids = np.where(flags, np.arange(1, k + 1, dtype=np.int32)[None, :], 0)
  # Stable sort moving the non-zero ids to the front, keeping their order.
  order = np.argsort(ids == 0, axis=1, kind="stable")
  column = np.take_along_axis(ids, order, axis=1)[:, :width].astype(np.int32)
  spec = FieldSpec(name, "multi", vocab_size=k + 1, width=width)
  return Encoded(spec, column, tuple(labels))


def dense(name: str, values: np.ndarray) -> Encoded:
  """Encodes numbers, standardised per column; missing (NaN) becomes 0 (the mean).

  Args:
    name: field name.
    values: ``[n]`` or ``[n, width]`` floats, NaN where missing.
  """
  x = np.asarray(values, np.float64)
  if x.ndim == 1:
    x = x[:, None]
  finite = np.isfinite(x)
  count = np.maximum(finite.sum(0), 1)
  mean = np.where(finite, x, 0.0).sum(0) / count
  var = np.where(finite, (x - mean) ** 2, 0.0).sum(0) / count
  std = np.where(var > 0, np.sqrt(var), 1.0)
  z = np.where(finite, (x - mean) / std, 0.0).astype(np.float32)
  spec = FieldSpec(name, "dense", width=x.shape[1])
  return Encoded(spec, z)


def constant_field(name: str, n: int) -> Encoded:
  """One categorical field with the same id for every row: "no side information"."""
  return Encoded(FieldSpec(name, "categorical", vocab_size=2), np.ones(n, np.int32))
