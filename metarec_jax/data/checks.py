"""Rating-level checks: out-of-scale ratings, unknown ids, duplicate pairs.

Each check counts the offending rows and names a few of them. What happens
next is a policy, never silence:

* ``bad_rows="error"`` (default): out-of-scale ratings and ids the feature
  tables lack raise a `DataError` with the counts and examples;
  ``bad_rows="drop"``: they are dropped, and a `DataWarning` and a note on the
  data set say how many and which.
* Duplicate (user, item) pairs are resolved by ``duplicates``: ``"last"``
  (default) keeps the later rating (latest timestamp; for equal or missing
  timestamps, the later line of the file), ``"first"`` the earlier one,
  ``"mean"`` keeps one row with the mean rating (and the latest timestamp),
  ``"error"`` raises. Every resolution is reported.
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np

from metarec_jax.data.parsing import DataError, DataWarning

BAD_ROW_POLICIES = ("error", "drop")
DUPLICATE_RULES = ("last", "first", "mean", "error")
EXAMPLES = 3

Describe = Callable[[np.ndarray], Sequence[str]]


def examples(describe: Describe, rows: np.ndarray, k: int = EXAMPLES) -> str:
  """``"a; b; c"``: the description of the first ``k`` of ``rows``."""
  rows = np.asarray(rows)[:k]
  return "; ".join(describe(rows))


class Reporter:
  """Collects data notes; raises or warns according to the bad-row policy.

  Attributes:
    policy: ``"error"`` or ``"drop"``.
    notes: what was reported so far (becomes ``Dataset.notes``).
  """

  def __init__(self, policy: str = "error"):
    if policy not in BAD_ROW_POLICIES:
      raise ValueError(f"data.bad_rows must be one of {BAD_ROW_POLICIES}, got {policy!r}")
    self.policy = policy
    self.notes: list[str] = []

  def note(self, message: str) -> None:
    """Records a resolved problem and warns about it."""
    self.notes.append(message)
    warnings.warn(message, DataWarning, stacklevel=3)

  def bad_rows(self, message: str) -> None:
    """Reports rows that break the data set's rules: raise, or note their removal."""
    if self.policy == "error":
      raise DataError(f"{message}. Fix the file, or set data.bad_rows=drop to drop these rows")
    self.note(f"{message}; dropped (data.bad_rows=drop)")


def check_scale(rating: np.ndarray, scale: tuple[float, float], source: str, describe: Describe,
                reporter: Reporter, noun: str = "rating") -> np.ndarray:
  """Boolean mask of ratings inside ``scale`` (NaN is outside); reports the rest.

  ``noun`` names the values in the report (``play count``); an infinite upper
  end reports the values "below" the lower one.
  """
  lo, hi = scale
  ok = (rating >= lo) & (rating <= hi)
  bad = np.flatnonzero(~ok)
  if len(bad):
    where = f"below {lo:g}" if np.isinf(hi) else f"outside the scale {lo:g}..{hi:g}"
    reporter.bad_rows(f"{source}: {len(bad)} {noun}(s) {where} (e.g. {examples(describe, bad)})")
  return ok


def check_known(rows: np.ndarray, what: str, table: str, source: str, describe: Describe,
                reporter: Reporter, noun: str = "rating") -> np.ndarray:
  """Boolean mask of ids found in their feature table (``rows >= 0``); reports the rest.

  Args:
    rows: feature-table row of each rating's id, -1 where the table lacks it.
    what: ``"user"`` or ``"item"``.
    table: the file the table comes from (named in the report).
    source: the ratings file.
    describe: row index -> text.
    reporter: where to report.
    noun: what a row is, in the report (``rating``, ``play count``).
  """
  ok = rows >= 0
  bad = np.flatnonzero(~ok)
  if len(bad):
    reporter.bad_rows(f"{source}: {len(bad)} {noun}(s) name {what} ids that {table} lacks "
                      f"(e.g. {examples(describe, bad)})")
  return ok


def resolve_duplicates(user: np.ndarray, item: np.ndarray, rating: np.ndarray,
                       timestamp: np.ndarray | None, rule: str, source: str, describe: Describe,
                       reporter: Reporter) -> tuple[np.ndarray, np.ndarray]:
  """Resolves repeated (user, item) pairs by ``rule`` (vectorised).

  Args:
    user, item, rating: the ratings, in file order.
    timestamp: their times, or ``None``.
    rule: one of `DUPLICATE_RULES` (see the module docstring).
    source: the file(s) the ratings come from (named in the report).
    describe: row index -> text.
    reporter: where to report.

  Returns:
    ``(rows, rating)``: the indices of the rows kept, in file order, and their
    ratings (changed only by ``"mean"``).

  Raises:
    DataError: duplicates and ``rule == "error"``.
  """
  if rule not in DUPLICATE_RULES:
    raise ValueError(f"data.duplicates must be one of {DUPLICATE_RULES}, got {rule!r}")
  n = len(user)
  if n == 0:
    return np.zeros(0, np.int64), rating
  key = user.astype(np.int64) * (int(item.max()) + 1) + item.astype(np.int64)
  position = np.arange(n)
  ts = timestamp if timestamp is not None else np.zeros(n, np.int64)
  order = np.lexsort((position, ts, key))
  k = key[order]
  first_of_group = np.concatenate([[True], k[1:] != k[:-1]])
  last_of_group = np.concatenate([k[1:] != k[:-1], [True]])
  if first_of_group.all():
    return position, rating
  group = np.cumsum(first_of_group) - 1
  sizes = np.bincount(group)
  dup_groups = np.flatnonzero(sizes > 1)
  extra = int((sizes - 1).sum())
  first_rows = order[first_of_group]
  shown = []
  for g in dup_groups[:EXAMPLES]:  # a few examples only
    rows = np.sort(order[group == g])
    shown.append(", ".join(describe(rows)))
  message = (f"{source}: {len(dup_groups)} (user, item) pair(s) rated more than once "
             f"({extra} extra row(s); e.g. {' | '.join(shown)})")
  if rule == "error":
    raise DataError(f"{message}. Set data.duplicates to last, first or mean to resolve them")
  rating = np.asarray(rating, np.float32).copy()
  if rule == "first":
    keep = first_rows
    said = "kept the earliest (data.duplicates=first)"
  else:
    keep = order[last_of_group]
    said = "kept the latest (data.duplicates=last)"
    if rule == "mean":
      rating[keep] = (np.bincount(group, weights=rating[order]) / sizes).astype(np.float32)
      said = "kept one row with the mean rating (data.duplicates=mean)"
  reporter.note(f"{message}; {said}")
  keep = np.sort(keep)
  return keep, rating[keep]


def clean_ratings(user_rows: np.ndarray, item_rows: np.ndarray, rating: np.ndarray,
                  timestamp: np.ndarray | None, *, scale: tuple[float, float] | None, source: str,
                  user_table: str, item_table: str, describe: Describe, reporter: Reporter,
                  duplicates: str = "last", noun: str = "rating",
                  item_noun: str = "item") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
  """Runs every rating check and returns the clean columns.

  Args:
    user_rows: feature-table row of each rating's user, -1 where unknown.
    item_rows: feature-table row of each rating's item, -1 where unknown.
    rating: the ratings.
    timestamp: their times, or ``None``.
    scale: the valid (min, max) rating, or ``None`` to skip the scale check.
    source: the ratings file.
    user_table: the file of the user table (for the unknown-id report).
    item_table: the file of the item table.
    describe: row index (in the input) -> text.
    reporter: where to report.
    duplicates: the rule for repeated (user, item) pairs.
    noun: what a row is, in reports (``rating``; Last.fm: ``play count``).
    item_noun: what an item is, in reports (``item``; Last.fm: ``artist``).

  Returns:
    ``(user, item, rating, timestamp)`` after the checks.
  """
  ok = check_known(user_rows, "user", user_table, source, describe, reporter, noun)
  ok &= check_known(item_rows, item_noun, item_table, source, describe, reporter, noun)
  if scale is not None:
    ok &= check_scale(rating, scale, source, describe, reporter, noun)
  keep = np.flatnonzero(ok)
  ts = None if timestamp is None else timestamp[keep]
  rows, r = resolve_duplicates(user_rows[keep], item_rows[keep], rating[keep].astype(np.float32), ts,
                               duplicates, source, lambda i: describe(keep[i]), reporter)
  keep = keep[rows]
  return (user_rows[keep], item_rows[keep], r,
          None if timestamp is None else timestamp[keep])
