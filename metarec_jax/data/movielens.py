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

Ratings must lie in 1..5; timestamps are kept (the ``temporal`` protocol uses
them). Repeated (user, item) pairs are resolved by ``data.duplicates`` (see
`checks`) and reported.
"""

from __future__ import annotations

import pathlib

import numpy as np

from metarec_jax.data.checks import Reporter, clean_ratings
from metarec_jax.data.interactions import Dataset, FeatureTable, Interactions
from metarec_jax.data.parsing import (DataError, MissingDataFile, Table, check_unique_ids, lookup,
                                      read_table, read_text, require)
from metarec_jax.data.vocab import Encoded, categorical, flags_to_multi, multi_hot

RATING_SCALE = (1.0, 5.0)
AGE_GROUPS = ("1", "18", "25", "35", "45", "50", "56")   # ML-1M's age codes
_AGE_EDGES = np.array([18, 25, 35, 45, 50, 56])
NEW_ITEM_YEAR = {"ml-100k": 1997, "ml-1m": 1998}        # about 20% of the movies are new


def variant(path: str | pathlib.Path) -> str | None:
  """``"ml-100k"``, ``"ml-1m"`` or ``None`` by the ratings file in ``path``."""
  p = pathlib.Path(path)
  if (p / "u.data").is_file():
    return "ml-100k"
  if (p / "ratings.dat").is_file():
    return "ml-1m"
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
  genres = read_table(get("u.genre"), "|", ("name", "index"), encoding="latin-1")
  genre_index = genres.ints("index")
  genre_names = genres.strings("name")[np.argsort(genre_index)]
  users = read_table(get("u.user"), "|", ("user_id", "age", "gender", "occupation", "zip"),
                     encoding="latin-1")
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
  items = read_table(get("u.item"), "|", ("item_id", "title", "release_date", "video_release_date",
                                            "url") + flag_names, encoding="latin-1")
  item_raw = items.ints("item_id")
  check_unique_ids(item_raw, items, "item_id")
  flags = np.stack([items.ints(f) for f in flag_names], axis=1) if len(items) else np.zeros((0, 0))
  known = genre_names != "unknown"
  item_year = release_year(items.strings("release_date"), "-")
  item_fields = [flags_to_multi("genre", flags[:, known], tuple(genre_names[known])),
                 _year_field(item_year)]
  data = read_table(get("u.data"), "\t", ("user_id", "item_id", "rating", "timestamp"),
                    encoding="latin-1")
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
  users = read_table(get("users.dat"), "::", ("user_id", "gender", "age", "occupation", "zip"),
                     encoding="latin-1")
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
  movies = read_table(get("movies.dat"), "::", ("item_id", "title", "genres"), encoding="latin-1")
  item_raw = movies.ints("item_id")
  check_unique_ids(item_raw, movies, "item_id")
  item_year = release_year(movies.strings("title"), "(")
  item_fields = [multi_hot("genre", movies.strings("genres").tolist(), "|", None),
                 _year_field(item_year)]
  ratings = read_table(get("ratings.dat"), "::", ("user_id", "item_id", "rating", "timestamp"),
                       encoding="latin-1")
  inter = _ratings(ratings, user_raw, item_raw, "users.dat", "movies.dat", reporter, duplicates)
  return _dataset("ml-1m", d, inter, user_raw, user_fields, item_raw, item_fields, item_year,
                  reporter)


def load_movielens(path: str | pathlib.Path, **options) -> Dataset:
  """Reads ML-100K or ML-1M, whichever ratings file ``path`` holds.

  Raises:
    MissingDataFile: neither ``u.data`` nor ``ratings.dat`` is there.
  """
  kind = variant(path)
  if kind == "ml-100k":
    return load_ml100k(path, **options)
  if kind == "ml-1m":
    return load_ml1m(path, **options)
  p = pathlib.Path(path)
  where = f"{p} does not exist" if not p.is_dir() else f"no MovieLens ratings in {p}"
  raise MissingDataFile(f"{where}: expected u.data (ML-100K; fetch it with: metarec data download "
                        f"ml-100k --to {p}) or ratings.dat (ML-1M; fetch it with: metarec data "
                        f"download ml-1m --to {p})")


__all__ = ["load_movielens", "load_ml100k", "load_ml1m", "variant", "age_group", "release_year",
           "DataError"]
