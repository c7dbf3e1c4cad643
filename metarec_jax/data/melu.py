"""MeLU's MovieLens-1M release (Lee et al., KDD 2019): side information and state files.

The folder (``metarec data download melu-ml1m --to DIR``) holds

* ``users.dat`` (GroupLens ML-1M, ``::``-separated, Latin-1): id, gender, age,
  occupation, zip code;
* ``movies_extrainfos.dat`` (``::``-separated, UTF-8): id, title, year, rate,
  released, genre, director, writer, actors, plot, poster;
* the vocabularies ``m_gender.txt``, ``m_age.txt``, ``m_occupation.txt``,
  ``m_zipcode.txt``, ``m_rate.txt``, ``m_genre.txt``, ``m_director.txt``,
  ``m_actor.txt`` (one entry a line);
* the four state files ``warm_state.json``, ``user_cold_state.json``,
  ``item_cold_state.json``, ``user_and_item_cold_state.json`` with their
  ratings ``*_y.json``: ``{"user_id": ["movie_id", ...]}`` and
  ``{"user_id": [rating, ...]}``.

Features follow MeLU's ``user_converting`` / ``item_converting``: user
``gender``, ``age``, ``occupation``, ``zip`` (first 5 characters); item
``rate``, ``genre``, ``director`` (parenthesised remarks such as
"(co-director)" removed), ``actor``; plus ``writer`` (same clean-up, vocabulary
built from the file) and ``year`` (release year). Lists are split at ", ".
Vocabulary entry ``p`` gets id ``p + 1``; 0 is unknown / padding. Like MeLU
(which reads the file with pandas), a field that is exactly "N/A" is the value
"nan", which ``m_director.txt`` and ``m_actor.txt`` list as an entry.

MeLU's code sizes the actor one-hot vector at 8,030 although ``m_actor.txt``
has 7,978 entries; here the actor field has 7,979 ids (0 = padding), and no
one-hot rows are built at all.

The warm state file repeats four (user, movie) pairs (MeLU merged movies 860
and 1795 into 811 and 1741); they are resolved by ``data.duplicates`` and
reported. All four repeating users have more than 100 ratings, so the 13..100
filter of the ``melu_states`` protocol never sees them.
"""

from __future__ import annotations

import itertools
import json
import pathlib
import re

import numpy as np

from metarec_jax.data.checks import Reporter, clean_ratings
from metarec_jax.data.interactions import Dataset, FeatureTable, Interactions
from metarec_jax.data.parsing import (DataError, check_unique_ids, lookup, read_table, read_text, require,
                                      require_rows)
from metarec_jax.data.vocab import Encoded, categorical, multi_hot

DOWNLOAD = "melu-ml1m"
RATING_SCALE = (1.0, 5.0)
STATE_FILES = {
    "warm": "warm_state",
    "user_cold": "user_cold_state",
    "item_cold": "item_cold_state",
    "user_item_cold": "user_and_item_cold_state",
}
USER_COLUMNS = ("user_id", "gender", "age", "occupation", "zip")
ITEM_COLUMNS = ("movie_id", "title", "year", "rate", "released", "genre", "director", "writer",
                "actors", "plot", "poster")
USER_FIELDS = ("gender", "age", "occupation", "zip")
ITEM_FIELDS = ("rate", "genre", "director", "actor", "writer", "year")
# Whole-field values pandas reads as NaN (MeLU then looks up str(NaN) == "nan").
NA_VALUES = ("", "N/A", "NA", "n/a", "nan", "NaN", "null", "NULL", "None", "#N/A", "<NA>")
_PARENS = re.compile(r"\([^()]*\)")


def is_melu_dir(path: str | pathlib.Path) -> bool:
  """Whether ``path`` looks like MeLU's release (state files + extra movie info)."""
  p = pathlib.Path(path)
  return (p / "warm_state.json").is_file() and (p / "movies_extrainfos.dat").is_file()


def read_vocab(path: pathlib.Path) -> tuple[str, ...]:
  """One entry a line, stripped; empty lines are skipped (MeLU's ``load_list``).

  Raises:
    DataError: the file has no entries, or an entry is repeated (names both lines).
  """
  entries = [e.strip() for e in read_text(path, "utf-8").split("\n")]
  if not any(entries):
    raise DataError(f"{path}: empty vocabulary: the file has no entries (one value a line); fetch it again with: "
                    f"metarec data download {DOWNLOAD} --to {path.parent}")
  seen: dict[str, int] = {}
  for line, e in enumerate(entries, 1):  # one pass over a vocabulary file, not over ratings
    if e and e in seen:
      raise DataError(f"{path}, line {line}: entry {e!r} repeats line {seen[e]}")
    seen.setdefault(e, line)
  return tuple(e for e in entries if e)


def _na_to_nan(values: np.ndarray) -> np.ndarray:
  return np.where(np.isin(values, np.asarray(NA_VALUES, dtype=str)), "nan", values)


def _strip_parens(values: np.ndarray) -> list[str]:
  """Removes "(...)" remarks from every string (one regex pass over all of them)."""
  if not len(values):
    return []
  return _PARENS.sub("", "\x1f".join(values.tolist())).split("\x1f")


def _note_unknown(field: Encoded, source: str, vocab_file: str, reporter: Reporter) -> None:
  if field.unknown:
    shown = ", ".join(f"{v!r} x{c}" for v, c in list(field.unknown.items())[:3])
    total = sum(field.unknown.values())
    reporter.note(f"{source}, field '{field.spec.name}': {total} value(s) not in {vocab_file} "
                  f"({len(field.unknown)} distinct, e.g. {shown}); encoded as unknown (id 0)")


def read_users(directory: pathlib.Path, reporter: Reporter) -> tuple[np.ndarray, list[Encoded]]:
  """Reads ``users.dat`` with MeLU's vocabularies.

  Returns:
    ``(raw user ids, encoded fields)``.
  """
  path = require(directory, "users.dat", DOWNLOAD)
  table = require_rows(read_table(path, "::", USER_COLUMNS, encoding="latin-1"), "users")
  raw_ids = table.ints("user_id")
  check_unique_ids(raw_ids, table, "user_id")
  zips = table.strings("zip").astype("<U5")  # MeLU keeps the first 5 characters
  fields = []
  for name, values, vocab_name in (("gender", table.strings("gender"), "m_gender.txt"),
                                   ("age", table.strings("age"), "m_age.txt"),
                                   ("occupation", table.strings("occupation"), "m_occupation.txt"),
                                   ("zip", zips, "m_zipcode.txt")):
    vocab = read_vocab(require(directory, vocab_name, DOWNLOAD))
    enc = categorical(name, values, vocab)
    _note_unknown(enc, path.name, vocab_name, reporter)
    fields.append(enc)
  return raw_ids, fields


def read_items(directory: pathlib.Path,
               reporter: Reporter) -> tuple[np.ndarray, list[Encoded], np.ndarray]:
  """Reads ``movies_extrainfos.dat`` with MeLU's vocabularies.

  Returns:
    ``(raw movie ids, encoded fields, int32 release year per movie (0 = unknown))``.
  """
  path = require(directory, "movies_extrainfos.dat", DOWNLOAD)
  table = require_rows(read_table(path, "::", ITEM_COLUMNS, encoding="utf-8"), "movies")
  raw_ids = table.ints("movie_id")
  check_unique_ids(raw_ids, table, "movie_id")
  vocab = {k: read_vocab(require(directory, f"m_{k}.txt", DOWNLOAD))
           for k in ("rate", "genre", "director", "actor")}
  col = {k: _na_to_nan(table.strings(k)) for k in ("rate", "genre", "director", "writer", "actors")}
  fields = [
      categorical("rate", col["rate"], vocab["rate"], missing=NA_VALUES),
      multi_hot("genre", col["genre"].tolist(), ", ", vocab["genre"], missing=NA_VALUES),
      multi_hot("director", _strip_parens(col["director"]), ", ", vocab["director"], missing=NA_VALUES),
      multi_hot("actor", col["actors"].tolist(), ", ", vocab["actor"], missing=NA_VALUES),
  ]
  for enc, vocab_name in zip(fields, ("m_rate.txt", "m_genre.txt", "m_director.txt", "m_actor.txt")):
    _note_unknown(enc, path.name, vocab_name, reporter)
  fields.append(multi_hot("writer", _strip_parens(col["writer"]), ", ", None, missing=NA_VALUES))
  years = table.strings("year")
  fields.append(categorical("year", years, None, missing=NA_VALUES))
  digits = np.char.isdigit(years) & (np.char.str_len(years) == 4)
  item_year = np.where(digits, years, "0").astype(np.int32)
  return raw_ids, fields, item_year


def _load_json(path: pathlib.Path):
  text = read_text(path, "utf-8")
  if not text.strip():
    raise DataError(f"{path}: empty file (expected a JSON object {{\"user_id\": [...]}}); fetch it again with: "
                    f"metarec data download {DOWNLOAD} --to {path.parent}")
  try:
    return json.loads(text)
  except json.JSONDecodeError as e:
    raise DataError(f"{path}, line {e.lineno}, column {e.colno}: not valid JSON ({e.msg})") from None


def read_state(directory: pathlib.Path, stem: str,
               reporter: Reporter | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Reads one state file pair (``STEM.json``, ``STEM_y.json``), flattened.

  Args:
    directory: the release folder.
    stem: the state file's name without ``.json``.
    reporter: where users with empty lists are reported (`checks.Reporter`:
      an error, or with ``data.bad_rows=drop`` a note); default: an error.

  Returns:
    ``(user ids, movie ids, ratings)`` in file order (int64, int64, float64).

  Raises:
    DataError: the files disagree (users, lengths), hold non-numbers, list
      no users or a user with empty lists; the message names the file, the
      user and the field.
  """
  reporter = reporter or Reporter("error")
  x_path = require(directory, f"{stem}.json", DOWNLOAD)
  y_path = require(directory, f"{stem}_y.json", DOWNLOAD)
  x, y = _load_json(x_path), _load_json(y_path)
  for path, obj, what in ((x_path, x, "movie ids"), (y_path, y, "ratings")):
    if not isinstance(obj, dict):
      raise DataError(f"{path}: expected a JSON object {{\"user_id\": [{what}, ...]}}, "
                      f"got {type(obj).__name__}")
  keys = list(x)
  if not keys:
    raise DataError(f"{x_path}: no users (the object is empty); every MeLU state file lists users; fetch it "
                    f"again with: metarec data download {DOWNLOAD} --to {directory}")
  missing = [k for k in keys if k not in y]
  extra = [k for k in y if k not in x]
  if missing or extra:
    k, here, there = (missing[0], x_path, y_path) if missing else (extra[0], y_path, x_path)
    raise DataError(f"{there}: user '{k}' (listed in {here.name}) is missing "
                    f"({len(missing) + len(extra)} user(s) differ between the two files)")
  for path, obj in ((x_path, x), (y_path, y)):
    bad = [k for k in keys if not isinstance(obj[k], list)]
    if bad:
      raise DataError(f"{path}: user '{bad[0]}': expected a list, got {type(obj[bad[0]]).__name__}")
  len_x = np.fromiter(map(len, x.values()), np.int64, len(keys))
  len_y = np.fromiter((len(y[k]) for k in keys), np.int64, len(keys))
  if (len_x != len_y).any():
    i = int(np.flatnonzero(len_x != len_y)[0])
    raise DataError(f"{y_path}: user '{keys[i]}' has {len_y[i]} ratings but {x_path.name} lists "
                    f"{len_x[i]} movies ({int((len_x != len_y).sum())} user(s) differ); the two files must "
                    "list one rating per movie, in the same order")
  empty = np.flatnonzero(len_x == 0)
  if len(empty):
    shown = ", ".join(f"'{keys[i]}'" for i in empty[:3])
    reporter.bad_rows(f"{x_path}: user '{keys[empty[0]]}' has no movies (and no ratings in {y_path.name}); "
                      f"{len(empty)} user(s) with empty lists (e.g. {shown})")
  users = _numbers(keys, np.int64, x_path, lambda i: f"user id {keys[i]!r}", "user_id")
  flat_x = list(itertools.chain.from_iterable(x.values()))
  flat_y = list(itertools.chain.from_iterable(y[k] for k in keys))
  owner = np.repeat(np.arange(len(keys)), len_x)

  def where(i):
    return f"user '{keys[owner[i]]}', entry {int(i - len_x[:owner[i]].sum()) + 1}"

  movies = _numbers(flat_x, np.int64, x_path, where, "movie_id")
  ratings = _numbers(flat_y, np.float64, y_path, where, "rating")
  return np.repeat(users, len_x), movies, ratings


def _numbers(values: list, dtype, path: pathlib.Path, where, field: str) -> np.ndarray:
  try:
    out = np.array(values, dtype=dtype)
    if out.ndim == 1:
      return out
  except (ValueError, TypeError, OverflowError):
    pass
  for i, v in enumerate(values):  # error path only: find the first bad value
    try:
      if isinstance(v, (list, dict, bool)) or v is None:
        raise ValueError
      np.array([v], dtype=dtype)
    except (ValueError, TypeError, OverflowError):
      raise DataError(f"{path}, {where(i)}, field '{field}': {v!r} is not a number") from None
  raise DataError(f"{path}: field '{field}' could not be read as numbers")


def load_melu(path: str | pathlib.Path, *, bad_rows: str = "error", duplicates: str = "last") -> Dataset:
  """Loads MeLU's ML-1M release as a `Dataset` with its four scenarios.

  Args:
    path: the release folder.
    bad_rows: ``"error"`` or ``"drop"`` for out-of-scale ratings and ids the
      feature tables lack (see `checks`).
    duplicates: how repeated (user, movie) pairs are resolved (see `checks`).

  Returns:
    The data set: ``interactions`` are all four state files together,
    ``scenarios`` each one by scenario name, the cold flags say which users and
    items the cold state files hold, and ``item_year`` is the release year.

  Raises:
    MissingDataFile: a file is absent (the message says how to fetch it).
    DataError: a file is malformed or the state files contradict each other.
  """
  directory = pathlib.Path(path)
  reporter = Reporter(bad_rows)
  user_raw, user_fields = read_users(directory, reporter)
  item_raw, item_fields, item_year = read_items(directory, reporter)
  scenarios = {}
  for scenario, stem in STATE_FILES.items():
    raw_u, raw_i, rating = read_state(directory, stem, reporter)
    source = f"{stem}.json"
    describe = lambda rows, raw_u=raw_u, raw_i=raw_i, rating=rating: [
        f"user {raw_u[r]} movie {raw_i[r]} rating {rating[r]:g}" for r in rows]
    u, i, r, _ = clean_ratings(lookup(user_raw, raw_u), lookup(item_raw, raw_i), rating, None,
                               scale=RATING_SCALE, source=source, user_table="users.dat",
                               item_table="movies_extrainfos.dat", describe=describe,
                               reporter=reporter, duplicates=duplicates)
    scenarios[scenario] = Interactions(u, i, r)
  user_is_cold, item_is_cold = _cold_flags(scenarios, len(user_raw), len(item_raw), user_raw,
                                           item_raw)
  parts = [scenarios[s] for s in STATE_FILES]
  interactions = Interactions(np.concatenate([p.user for p in parts]),
                              np.concatenate([p.item for p in parts]),
                              np.concatenate([p.rating for p in parts]))
  return Dataset(
      name="melu-ml1m",
      interactions=interactions,
      users=FeatureTable(tuple(f.spec for f in user_fields), {f.spec.name: f.column for f in user_fields}),
      items=FeatureTable(tuple(f.spec for f in item_fields), {f.spec.name: f.column for f in item_fields}),
      rating_scale=RATING_SCALE,
      user_is_cold=user_is_cold,
      item_is_cold=item_is_cold,
      scenarios=scenarios,
      item_year=item_year,
      user_raw_ids=user_raw,
      item_raw_ids=item_raw,
      notes=tuple(reporter.notes),
      source=f"melu {directory}",
  )


def _cold_flags(scenarios: dict[str, Interactions], n_users: int, n_items: int, user_raw: np.ndarray,
                item_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Cold users: those of the user-cold state files; cold items: those of the item-cold ones.

  Raises:
    DataError: a user (or item) is in both a warm and a cold state file.
  """
  def present(names, attr, n):
    flags = np.zeros(n, bool)
    for s in names:
      flags[getattr(scenarios[s], attr)] = True
    return flags

  cold_u = present(("user_cold", "user_item_cold"), "user", n_users)
  warm_u = present(("warm", "item_cold"), "user", n_users)
  cold_i = present(("item_cold", "user_item_cold"), "item", n_items)
  warm_i = present(("warm", "user_cold"), "item", n_items)
  for both, raw, what, cold_files, warm_files in (
      (cold_u & warm_u, user_raw, "user", "user_cold_state / user_and_item_cold_state",
       "warm_state / item_cold_state"),
      (cold_i & warm_i, item_raw, "movie", "item_cold_state / user_and_item_cold_state",
       "warm_state / user_cold_state")):
    if both.any():
      shown = ", ".join(str(v) for v in raw[np.flatnonzero(both)[:3]])
      raise DataError(f"MeLU state files disagree: {int(both.sum())} {what}(s) appear in both "
                      f"{cold_files} and {warm_files} (e.g. {shown})")
  return cold_u, cold_i
