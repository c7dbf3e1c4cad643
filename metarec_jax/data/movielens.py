"""MovieLens 100K and 1M readers (the GroupLens originals).

* ML-100K (``metarec data download ml-100k --to DIR``): ``u.data`` (tab:
  user, item, rating, timestamp), ``u.user`` (``|``: id, age, gender,
  occupation, zip), ``u.item`` (``|``, Latin-1: id, title, release date,
  video release date, IMDb URL, one 0/1 column per genre), ``u.genre``
  (``name|index``), ``u.occupation`` (one name a line).
* ML-1M (``metarec data download ml-1m --to DIR``): ``ratings.dat``,
  ``users.dat``, ``movies.dat`` (``::``-separated, Latin-1).

Fields, named as for MeLU's release: user ``gender``, ``age``, ``occupation``,
``zip`` (first 5 characters); item ``genre`` (multi-hot) and ``year``
(release year). ML-100K ages are grouped into ML-1M's age groups (under 18,
18-24, 25-34, 35-44, 45-49, 50-55, 56+; labels "1", "18", ..., "56") so that
both data sets share one vocabulary; ML-100K's "unknown" genre is no genre.

* ML-20M / ML-25M / ML-32M / ml-latest (``ratings.csv``, header
  ``userId,movieId,rating,timestamp``, half stars 0.5..5; ``movies.csv``,
  ``movieId,title,genres``, UTF-8 with quoted titles, optional): there are no
  user features, so users get one constant field (``user_constant``) and are
  the ids that rate, in ascending order; items are the rows of ``movies.csv``
  (or, without it, the ids that are rated, with a constant field).

Ratings must lie in 1..5 (0.5..5 for ``ratings.csv``); timestamps are kept
(the ``temporal`` protocol uses them). Repeated (user, item) pairs are
resolved by ``data.duplicates`` (see `checks`) and reported.

Reading ``ratings.csv`` at 25M rows: the file holds numbers only, so it is
read by `parsing.read_numeric_csv`: one pass counts the lines, so the columns
are allocated once at their final type (``int64`` ids and times, ``float32``
ratings); a second pass hands blocks of 64 MB of whole lines to numpy's C
reader (``np.loadtxt`` on the block's bytes) and checks each block, falling
back to the line-exact `read_table` only to name a bad line. Why this: it
needs no new dependency and no compiled code of ours, and memory stays at the
output columns plus a block. ``np.loadtxt`` has been C code since numpy 1.23
and measured 2-3x faster here than ``np.fromstring(..., sep=",")`` (the
other C text parser in numpy) and about 5x faster than ``bytes.split`` plus
a conversion; `read_table` builds a Python string per token (gigabytes at
25M). ``pyarrow.csv`` would read with several threads, but is a large
optional dependency for one file format, and the reader is not the slow
part on two cores (see ``benchmarks/README.md``, "Loading at 25M"). Ids
are mapped to rows by a presence table (``bincount`` style, O(rows)) when
they are dense, by sorting otherwise, and the O(n log n) duplicate check is
skipped when the (user, movie) keys are already strictly increasing, as in
GroupLens's files. `write_ratings_csv` writes the same format from numpy
(vectorised digit arithmetic), for benchmarks and tests.
"""

from __future__ import annotations

import csv
import io
import pathlib
import re

import numpy as np

from metarec_jax.data.checks import Reporter, clean_ratings
from metarec_jax.data.interactions import Dataset, FeatureTable, Interactions
from metarec_jax.data.parsing import (DataError, MissingDataFile, Table, check_folder, check_unique_ids, lookup,
                                      read_numeric_csv, read_table, read_text, require, require_rows)
from metarec_jax.data.vocab import Encoded, categorical, constant_field, flags_to_multi, multi_hot

RATING_SCALE = (1.0, 5.0)
AGE_GROUPS = ("1", "18", "25", "35", "45", "50", "56")   # ML-1M's age codes
_AGE_EDGES = np.array([18, 25, 35, 45, 50, 56])
NEW_ITEM_YEAR = {"ml-100k": 1997, "ml-1m": 1998}        # about 20% of the movies are new
CSV_RATING_SCALE = (0.5, 5.0)                            # ratings.csv: half stars
CSV_HEADER = ("userId", "movieId", "rating", "timestamp")
NO_GENRES = "(no genres listed)"


def variant(path: str | pathlib.Path) -> str | None:
  """``"ml-100k"``, ``"ml-1m"``, ``"ml-csv"`` (ML-20M and later) or ``None`` by the ratings file in ``path``."""
  p = pathlib.Path(path)
  if (p / "u.data").is_file():
    return "ml-100k"
  if (p / "ratings.dat").is_file():
    return "ml-1m"
  if (p / "ratings.csv").is_file():
    return "ml-csv"
  return None


def age_group(ages: np.ndarray) -> np.ndarray:
  """Ages in years -> ML-1M's age-group labels (vectorised)."""
  return np.asarray(AGE_GROUPS)[np.digitize(ages, _AGE_EDGES)]


def release_year(texts: np.ndarray, sep: str) -> np.ndarray:
  """The 4-digit year after the last ``sep`` of each string (0 if none), vectorised."""
  if not len(texts):
    return np.zeros(0, np.int32)
  tail = np.char.strip(np.char.rpartition(np.char.strip(texts), sep)[:, 2], ")( ")
  ok = np.char.isdigit(tail) & (np.char.str_len(tail) == 4)
  return np.where(ok, tail, "0").astype(np.int32)


def _year_field(years: np.ndarray) -> Encoded:
  labels = np.where(years > 0, years.astype(str), "")
  return categorical("year", labels, None)


def _note_unknown(field: Encoded, source: str, reporter: Reporter) -> None:
  if field.unknown:
    shown = ", ".join(f"{v!r} x{c}" for v, c in list(field.unknown.items())[:3])
    reporter.note(f"{source}, field '{field.spec.name}': {sum(field.unknown.values())} unknown "
                  f"value(s) (e.g. {shown}); encoded as unknown (id 0)")


def _ratings(table: Table, user_raw: np.ndarray, item_raw: np.ndarray, user_file: str, item_file: str,
             reporter: Reporter, duplicates: str) -> Interactions:
  raw_u, raw_i = table.ints("user_id"), table.ints("item_id")
  rating, ts = table.floats("rating"), table.ints("timestamp")
  describe = lambda rows: [f"line {table.lines[r]}: user {raw_u[r]} item {raw_i[r]} rating {rating[r]:g}"
                           for r in rows]
  u, i, r, t = clean_ratings(lookup(user_raw, raw_u), lookup(item_raw, raw_i), rating, ts,
                             scale=RATING_SCALE, source=table.path.name, user_table=user_file,
                             item_table=item_file, describe=describe, reporter=reporter,
                             duplicates=duplicates)
  return Interactions(u, i, r, t)


def _dataset(name: str, directory: pathlib.Path, interactions: Interactions, user_raw: np.ndarray,
             user_fields: list[Encoded], item_raw: np.ndarray, item_fields: list[Encoded],
             item_year: np.ndarray, reporter: Reporter) -> Dataset:
  return Dataset(
      name=name,
      interactions=interactions,
      users=FeatureTable(tuple(f.spec for f in user_fields), {f.spec.name: f.column for f in user_fields}),
      items=FeatureTable(tuple(f.spec for f in item_fields), {f.spec.name: f.column for f in item_fields}),
      rating_scale=RATING_SCALE,
      item_year=item_year,
      user_raw_ids=user_raw,
      item_raw_ids=item_raw,
      split_options={"new_item_year": NEW_ITEM_YEAR[name]},
      notes=tuple(reporter.notes),
      source=f"movielens {directory}",
  )


def load_ml100k(path: str | pathlib.Path, *, bad_rows: str = "error", duplicates: str = "last") -> Dataset:
  """Reads MovieLens 100K.

  Args:
    path: the folder with ``u.data``, ``u.user``, ``u.item``, ``u.genre``, ``u.occupation``.
    bad_rows: ``"error"`` or ``"drop"`` (see `checks`).
    duplicates: rule for repeated (user, item) pairs (see `checks`).

  Raises:
    MissingDataFile: a file is absent.
    DataError: a file is malformed.
  """
  d = pathlib.Path(path)
  reporter = Reporter(bad_rows)
  get = lambda name: require(d, name, "ml-100k")
  occupations = tuple(o.strip() for o in read_text(get("u.occupation"), "latin-1").split("\n") if o.strip())
  if not occupations:
    raise DataError(f"{d / 'u.occupation'}: no occupations: the file has no entries; is it complete?")
  genres = require_rows(read_table(get("u.genre"), "|", ("name", "index"), encoding="latin-1"), "genres")
  genre_index = genres.ints("index")
  genre_names = genres.strings("name")[np.argsort(genre_index)]
  users = require_rows(read_table(get("u.user"), "|", ("user_id", "age", "gender", "occupation", "zip"),
                                  encoding="latin-1"), "users")
  user_raw = users.ints("user_id")
  check_unique_ids(user_raw, users, "user_id")
  user_fields = [
      categorical("gender", users.strings("gender"), None),
      categorical("age", age_group(users.ints("age")), AGE_GROUPS),
      categorical("occupation", users.strings("occupation"), occupations),
      categorical("zip", users.strings("zip").astype("<U5"), None),
  ]
  _note_unknown(user_fields[2], "u.user", reporter)
  flag_names = tuple(f"genre_{i}" for i in range(len(genre_names)))
  try:
    items = read_table(get("u.item"), "|", ("item_id", "title", "release_date", "video_release_date",
                                              "url") + flag_names, encoding="latin-1")
  except DataError as e:
    raise DataError(f"{e} (u.genre lists {len(genre_names)} genres, so every line of u.item has 5 fields and "
                    f"one 0/1 flag per genre)") from None
  require_rows(items, "items")
  item_raw = items.ints("item_id")
  check_unique_ids(item_raw, items, "item_id")
  flags = np.stack([items.ints(f) for f in flag_names], axis=1) if len(items) else np.zeros((0, 0))
  known = genre_names != "unknown"
  item_year = release_year(items.strings("release_date"), "-")
  item_fields = [flags_to_multi("genre", flags[:, known], tuple(genre_names[known])),
                 _year_field(item_year)]
  data = require_rows(read_table(get("u.data"), "\t", ("user_id", "item_id", "rating", "timestamp"),
                                 encoding="latin-1"), "ratings")
  inter = _ratings(data, user_raw, item_raw, "u.user", "u.item", reporter, duplicates)
  return _dataset("ml-100k", d, inter, user_raw, user_fields, item_raw, item_fields, item_year,
                  reporter)


def load_ml1m(path: str | pathlib.Path, *, bad_rows: str = "error", duplicates: str = "last") -> Dataset:
  """Reads MovieLens 1M.

  Args:
    path: the folder with ``ratings.dat``, ``users.dat``, ``movies.dat``.
    bad_rows: ``"error"`` or ``"drop"`` (see `checks`).
    duplicates: rule for repeated (user, item) pairs (see `checks`).

  Raises:
    MissingDataFile: a file is absent.
    DataError: a file is malformed.
  """
  d = pathlib.Path(path)
  reporter = Reporter(bad_rows)
  get = lambda name: require(d, name, "ml-1m")
  users = require_rows(read_table(get("users.dat"), "::", ("user_id", "gender", "age", "occupation", "zip"),
                                  encoding="latin-1"), "users")
  user_raw = users.ints("user_id")
  check_unique_ids(user_raw, users, "user_id")
  user_fields = [
      categorical("gender", users.strings("gender"), None),
      categorical("age", users.strings("age"), AGE_GROUPS),
      categorical("occupation", users.strings("occupation"), tuple(str(i) for i in range(21))),
      categorical("zip", users.strings("zip").astype("<U5"), None),
  ]
  for f in user_fields[1:3]:
    _note_unknown(f, "users.dat", reporter)
  movies = require_rows(read_table(get("movies.dat"), "::", ("item_id", "title", "genres"), encoding="latin-1"),
                        "movies")
  item_raw = movies.ints("item_id")
  check_unique_ids(item_raw, movies, "item_id")
  item_year = release_year(movies.strings("title"), "(")
  item_fields = [multi_hot("genre", movies.strings("genres").tolist(), "|", None),
                 _year_field(item_year)]
  ratings = require_rows(read_table(get("ratings.dat"), "::", ("user_id", "item_id", "rating", "timestamp"),
                                    encoding="latin-1"), "ratings")
  inter = _ratings(ratings, user_raw, item_raw, "users.dat", "movies.dat", reporter, duplicates)
  return _dataset("ml-1m", d, inter, user_raw, user_fields, item_raw, item_fields, item_year,
                  reporter)


def dense_rows(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """``(keys, rows)``: the distinct ids in ascending order and the row of each id in ``keys``.

  O(n) with a presence table when the ids are non-negative and not much
  larger than their count; a sort otherwise.
  """
  raw = np.asarray(raw, np.int64)
  if not len(raw):
    return np.zeros(0, np.int64), np.zeros(0, np.int64)
  lo, hi = int(raw.min()), int(raw.max())
  if lo >= 0 and hi < 4 * len(raw) + (1 << 20):
    present = np.zeros(hi + 1, bool)
    present[raw] = True
    keys = np.flatnonzero(present)
    row_of = np.cumsum(present) - 1
    return keys, row_of[raw]
  keys, rows = np.unique(raw, return_inverse=True)
  return keys, rows.reshape(-1)


def _read_movies_csv(path: pathlib.Path) -> tuple[np.ndarray, list[str], np.ndarray]:
  """``(movie ids, genre strings, titles)`` of ``movies.csv`` (quoted CSV, UTF-8)."""
  text = read_text(path, "utf-8").lstrip("\ufeff")
  rows = list(csv.reader(io.StringIO(text)))
  if not rows or tuple(h.strip() for h in rows[0]) != ("movieId", "title", "genres"):
    raise DataError(f"{path}, line 1: header {','.join(rows[0]) if rows else ''!r}, expected 'movieId,title,genres'")
  ids, titles, genres = [], [], []
  for n, row in enumerate(rows[1:], start=2):  # 60k lines: the csv module is fast enough, and handles quotes
    if not row:
      continue
    if len(row) != 3:
      raise DataError(f"{path}, line {n}: expected 3 fields (movieId,title,genres), found {len(row)}")
    try:
      ids.append(int(row[0]))
    except ValueError:
      raise DataError(f"{path}, line {n}, field 'movieId': {row[0]!r} is not an integer") from None
    titles.append(row[1])
    genres.append("" if row[2].strip() == NO_GENRES else row[2])
  if not ids:
    raise DataError(f"{path}: no movies: the file has no data lines; is it complete? (without movies.csv the "
                    "movies are the ids that ratings.csv rates)")
  return np.asarray(ids, np.int64), genres, np.asarray(titles, dtype=str)


def _clean(user_rows: np.ndarray, item_rows: np.ndarray, rating: np.ndarray, num_items: int) -> bool:
  """True when `clean_ratings` would find nothing: known ids, ratings in scale, no repeated pair.

  ``ratings.csv`` is sorted by user then movie, so strictly increasing pair
  keys (one O(n) pass) prove there are no duplicates; otherwise the keys are
  sorted once.
  """
  lo, hi = CSV_RATING_SCALE
  if len(user_rows) < 2:
    return bool((user_rows >= 0).all() and (item_rows >= 0).all() and ((rating >= lo) & (rating <= hi)).all())
  if user_rows.min() < 0 or item_rows.min() < 0 or not ((rating >= lo) & (rating <= hi)).all():
    return False
  key = user_rows.astype(np.int64) * max(num_items, 1) + item_rows
  if (key[1:] > key[:-1]).all():
    return True
  key.sort()
  return bool((key[1:] != key[:-1]).all())


def csv_name(directory: pathlib.Path) -> str:
  """``ml-25m`` (etc.) when the folder is named like a GroupLens release, else ``ml-csv``."""
  m = re.fullmatch(r"(ml-\d+m|ml-latest(-small)?)", directory.name.lower())
  return m.group(0) if m else "ml-csv"


def load_ml_csv(path: str | pathlib.Path, *, bad_rows: str = "error", duplicates: str = "last") -> Dataset:
  """Reads a MovieLens ``ratings.csv`` release (ML-20M, ML-25M, ML-32M, ml-latest).

  Args:
    path: the folder with ``ratings.csv`` and, optionally, ``movies.csv``.
    bad_rows: ``"error"`` or ``"drop"`` (see `checks`).
    duplicates: rule for repeated (user, item) pairs (see `checks`).

  Returns:
    A `Dataset` named by the folder (`csv_name`); ``new_item_year`` is the
    year that makes about 20% of the movies with a year new.

  Raises:
    MissingDataFile: ``ratings.csv`` is absent.
    DataError: a file is malformed.
  """
  d = pathlib.Path(path)
  reporter = Reporter(bad_rows)
  ratings = read_numeric_csv(require(d, "ratings.csv"), CSV_HEADER, integers=("userId", "movieId", "timestamp"),
                             dtypes={"rating": np.float32})
  cols = ratings.columns
  if not len(cols["userId"]):
    raise DataError(f"{ratings.path}: no ratings: the file has no data lines; is it complete?")
  raw_u, raw_i, rating, ts = cols["userId"], cols["movieId"], cols["rating"], cols["timestamp"]
  user_raw, user_rows = dense_rows(raw_u)
  movies = d / "movies.csv"
  if movies.is_dir():
    raise DataError(f"{movies} is a folder, not a file")
  if movies.is_file():
    item_raw, genres, titles = _read_movies_csv(movies)
    order = np.argsort(item_raw, kind="stable")
    dup = np.flatnonzero(item_raw[order][1:] == item_raw[order][:-1])
    if len(dup):
      raise DataError(f"{movies}: movieId {item_raw[order][dup[0]]} appears more than once")
    item_rows = lookup(item_raw, raw_i)
    item_year = release_year(titles, "(")
    item_fields = [multi_hot("genre", genres, "|", None), _year_field(item_year)]
    item_file = "movies.csv"
  else:
    item_raw, item_rows = dense_rows(raw_i)
    item_year = np.zeros(len(item_raw), np.int32)
    item_fields = [constant_field("item_constant", len(item_raw))]
    item_file = "ratings.csv (no movies.csv)"
  describe = lambda rows: [f"line {int(ratings.line_numbers([r])[0])}: user {raw_u[r]} item {raw_i[r]} "
                           f"rating {rating[r]:g}" for r in rows]
  rating = rating.astype(np.float32, copy=False)
  if _clean(user_rows, item_rows, rating, len(item_raw)):  # nothing to check or report: skip the big sorts
    u, i, r, t = user_rows, item_rows, rating, ts
  else:
    u, i, r, t = clean_ratings(user_rows, item_rows, rating, ts, scale=CSV_RATING_SCALE, source="ratings.csv",
                               user_table="ratings.csv", item_table=item_file, describe=describe,
                               reporter=reporter, duplicates=duplicates)
  known = item_year[item_year > 0]
  new_year = int(np.quantile(known, 0.8)) if len(known) else 0
  name = csv_name(d)
  return Dataset(
      name=name,
      interactions=Interactions(u, i, r, t),
      users=FeatureTable((constant_field("user_constant", len(user_raw)).spec,),
                         {"user_constant": np.ones(len(user_raw), np.int32)}),
      items=FeatureTable(tuple(f.spec for f in item_fields), {f.spec.name: f.column for f in item_fields}),
      rating_scale=CSV_RATING_SCALE,
      item_year=item_year,
      user_raw_ids=user_raw,
      item_raw_ids=item_raw,
      split_options={"new_item_year": new_year} if new_year else {},
      notes=tuple(reporter.notes),
      source=f"movielens {d}",
  )


_FOUR_DIGITS = np.array([list(f"{i:04d}".encode()) for i in range(10_000)], np.uint8)  # i -> 4 ASCII digits


def _digits(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """ASCII digits of non-negative ints, right-aligned ``[n, width]``, and the count of each.

  Four digits at a time (one division by 10,000 and a table lookup), since
  integer division dominates the cost.
  """
  x = np.asarray(x, np.int64)
  top = int(x.max()) if len(x) else 0
  width = len(str(top))
  groups = -(-width // 4)
  digits = np.empty((len(x), 4 * groups), np.uint8)
  q = x
  for g in range(groups - 1, -1, -1):
    nxt = q // 10_000
    digits[:, 4 * g:4 * g + 4] = _FOUR_DIGITS[q - nxt * 10_000]
    q = nxt
  count = np.ones(len(x), np.int64)
  for k in range(1, width):
    count += x >= 10 ** k
  return digits[:, 4 * groups - width:], count


def write_ratings_csv(path: str | pathlib.Path, user: np.ndarray, item: np.ndarray, rating: np.ndarray,
                      timestamp: np.ndarray, *, chunk: int = 1 << 20) -> pathlib.Path:
  """Writes ``ratings.csv`` in ML-25M's format (``userId,movieId,rating,timestamp``, one decimal).

  Vectorised: every chunk of rows becomes one byte matrix of digits and
  separators, of which the kept bytes are written (about 2 s per 10M rows).

  Args:
    path: the file to write.
    user, item: raw ids (non-negative integers).
    rating: ratings (written with one decimal, e.g. ``3.5``, ``4.0``).
    timestamp: non-negative integer times.
    chunk: rows per write.

  Returns:
    ``path``.
  """
  path = pathlib.Path(path)
  n = len(user)
  tenths = np.rint(np.asarray(rating, np.float64) * 10).astype(np.int64)
  if n and tenths.min() < 0:
    raise ValueError("write_ratings_csv: ratings must be non-negative")
  with open(path, "wb") as f:
    f.write((",".join(CSV_HEADER) + "\n").encode())
    for lo in range(0, n, chunk):
      sl = slice(lo, lo + chunk)
      blocks, keep = [], []
      for values, end in ((user[sl], b","), (item[sl], b","), (tenths[sl] // 10, b"."), (tenths[sl] % 10, b","),
                          (timestamp[sl], b"\n")):
        digits, count = _digits(values)
        width = digits.shape[1]
        blocks += [digits, np.full((len(digits), 1), end[0], np.uint8)]
        keep += [np.arange(width)[None, :] >= (width - count)[:, None], np.ones((len(digits), 1), bool)]
      f.write(np.concatenate(blocks, axis=1)[np.concatenate(keep, axis=1)].tobytes())
  return path


def load_movielens(path: str | pathlib.Path, **options) -> Dataset:
  """Reads ML-100K, ML-1M or a ``ratings.csv`` release, whichever ratings file ``path`` holds.

  Raises:
    MissingDataFile: none of ``u.data``, ``ratings.dat``, ``ratings.csv`` is there.
  """
  check_folder(path)
  kind = variant(path)
  if kind == "ml-100k":
    return load_ml100k(path, **options)
  if kind == "ml-1m":
    return load_ml1m(path, **options)
  if kind == "ml-csv":
    return load_ml_csv(path, **options)
  p = pathlib.Path(path)
  where = f"{p} does not exist" if not p.is_dir() else f"no MovieLens ratings in {p}"
  raise MissingDataFile(f"{where}: expected u.data (ML-100K; fetch it with: metarec data download "
                        f"ml-100k --to {p}), ratings.dat (ML-1M; fetch it with: metarec data "
                        f"download ml-1m --to {p}) or ratings.csv (ML-20M, ML-25M, ml-latest)")


__all__ = ["load_movielens", "load_ml100k", "load_ml1m", "load_ml_csv", "write_ratings_csv", "variant",
           "age_group", "release_year", "DataError"]
