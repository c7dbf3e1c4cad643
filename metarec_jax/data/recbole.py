"""RecBole atomic files: ``NAME.inter``, ``NAME.user``, ``NAME.item``.

Tab-separated, one typed header line (``field:token``, ``field:token_seq``,
``field:float``, ``field:float_seq``), UTF-8. The data set name is taken from
the ``.inter`` file's name.

* ``.inter`` must have ``user_id:token``, ``item_id:token`` and a ``rating``
  field; a ``timestamp`` field is kept when present.
* In ``.user`` / ``.item`` every ``token`` field becomes a categorical
  feature, every ``token_seq`` (space-separated) a multi-hot one, every
  ``float`` / ``float_seq`` a dense one (standardised; missing = the mean),
  unless ``fields`` names the ones to read. A side without features (no
  ``.user`` / ``.item`` file, or no fields in it) gets one constant field
  (``user_constant`` / ``item_constant``): no side information.
* An item field named ``release_year`` or ``year`` with 4-digit values also
  gives ``Dataset.item_year`` (for the ``temporal`` protocol).

Ratings are checked against ``rating_scale`` when one is given (RecBole files
carry no scale); otherwise the observed range is the scale.
"""

from __future__ import annotations

import pathlib
from typing import Sequence

import numpy as np

from metarec_jax.data.checks import Reporter, clean_ratings
from metarec_jax.data.interactions import Dataset, FeatureTable, Interactions
from metarec_jax.data.parsing import (DataError, MissingDataFile, Table, check_folder, check_unique_ids, lookup,
                                      read_table, split_lists)
from metarec_jax.data.vocab import Encoded, categorical, constant_field, dense, multi_hot

TYPES = ("token", "token_seq", "float", "float_seq")
USER_ID, ITEM_ID, RATING, TIMESTAMP = "user_id", "item_id", "rating", "timestamp"
YEAR_FIELDS = ("release_year", "year")


def find_name(path: str | pathlib.Path) -> str:
  """The data set name: the stem of the one ``.inter`` file in ``path``.

  Raises:
    MissingDataFile: no ``.inter`` file.
    DataError: several ``.inter`` files.
  """
  p = pathlib.Path(path)
  check_folder(p)
  if not p.is_dir():
    raise MissingDataFile(f"data directory {p} does not exist (expected RecBole atomic files "
                          "NAME.inter, NAME.user, NAME.item)")
  found = sorted(p.glob("*.inter"))
  folders = [f for f in found if not f.is_file()]
  if folders:
    raise DataError(f"{folders[0]} is a folder, not a file: RecBole's NAME.inter is a tab-separated file")
  if not found:
    raise MissingDataFile(f"no RecBole .inter file in {p} (expected NAME.inter, NAME.user, NAME.item)")
  if len(found) > 1:
    raise DataError(f"several RecBole .inter files in {p} ({', '.join(f.name for f in found)}); "
                    "put each data set in its own folder")
  return found[0].name[:-len(".inter")]


def read_atomic(path: pathlib.Path) -> tuple[Table, dict[str, str]]:
  """Reads one atomic file: the table (fields named without types) and field -> type.

  Raises:
    DataError: a header entry lacks a known type (names line 1 and the field).
  """
  if path.is_dir():
    raise DataError(f"{path} is a folder, not a file")
  try:
    with open(path, "rb") as f:
      head = f.readline().decode("utf-8-sig", errors="replace").rstrip("\r\n")
  except OSError as e:
    raise DataError(f"{path}: cannot read the file ({e.strerror or e}); check its permissions") from None
  if not head.strip():
    raise DataError(f"{path}, line 1: no header: the file is empty or starts with a blank line (expected a "
                    "tab-separated header of NAME:TYPE fields, e.g. user_id:token)")
  if "\t" not in head:
    for sep, sep_name in ((",", "commas"), (";", "semicolons"), ("|", "bars")):
      if head.count(sep) and head.count(":") > 1:
        raise DataError(f"{path}, line 1: RecBole atomic files are tab-separated, but this header is separated "
                        f"by {sep_name}; convert the file (e.g. `tr '{sep}' '\\t' < {path.name} > fixed.inter`)")
  types, names = {}, []
  for entry in head.split("\t"):
    name, colon, kind = entry.strip().rpartition(":")
    if not colon or kind not in TYPES:
      raise DataError(f"{path}, line 1, field '{entry}': expected NAME:TYPE with TYPE one of "
                      f"{', '.join(TYPES)}")
    if name in types:
      raise DataError(f"{path}, line 1, field '{name}': named twice in the header")
    types[name] = kind
    names.append(name)
  return read_table(path, "\t", names, header=True, encoding="utf-8"), types


def _floats_seq(table: Table, name: str) -> np.ndarray:
  """A ``float_seq`` column as ``[n, longest]`` floats, NaN-padded."""
  values = table.columns[name]
  tokens, counts = split_lists(values, " ")
  flat = np.asarray(tokens, dtype=str)
  flat = np.where(flat == "", "nan", flat)
  try:
    numbers = flat.astype(np.float64)
  except ValueError:
    for row, value in enumerate(values):  # error path only: find the bad row
      try:
        [float(t) for t in value.split()]
      except ValueError:
        raise table.error(row, name, f"{value!r} is not a space-separated list of numbers") from None
    raise
  width = max(int(counts.max()) if len(counts) else 0, 1)
  out = np.full((len(values), width), np.nan)
  row = np.repeat(np.arange(len(values)), counts)
  pos = np.arange(len(flat)) - np.repeat(np.cumsum(counts) - counts, counts)
  out[row, pos] = numbers
  return out


def encode_fields(table: Table, types: dict[str, str], id_name: str,
                  fields: Sequence[str] = ()) -> list[Encoded]:
  """Encodes the feature fields of a ``.user`` / ``.item`` table by type.

  Raises:
    DataError: ``fields`` names a field the file lacks.
  """
  available = [n for n in table.names if n != id_name]
  if fields:
    unknown = [f for f in fields if f not in available]
    if unknown:
      raise DataError(f"{table.path}: no field(s) {unknown}; the file has {available} "
                      "(check model.user_fields / model.item_fields)")
    available = [n for n in available if n in fields]
  out = []
  for name in available:
    kind = types[name]
    if kind == "token":
      out.append(categorical(name, table.strings(name), None))
    elif kind == "token_seq":
      out.append(multi_hot(name, table.columns[name], " ", None))
    elif kind == "float":
      out.append(dense(name, table.floats(name, allow_empty=True)))
    else:
      out.append(dense(name, _floats_seq(table, name)))
  return out


def _side(directory: pathlib.Path, name: str, suffix: str, id_name: str, inter_ids: np.ndarray,
          fields: Sequence[str], reporter: Reporter) -> tuple[np.ndarray, list[Encoded], Table | None]:
  """Row keys and encoded features of one side (users or items)."""
  path = directory / f"{name}.{suffix}"
  if path.is_dir():
    raise DataError(f"{path} is a folder, not a file")
  if not path.is_file():
    keys = np.unique(inter_ids)
    reporter.note(f"{path.name} not found: {id_name.split('_')[0]}s have no features")
    return keys, [], None
  table, types = read_atomic(path)
  if id_name not in types:
    raise DataError(f"{path}, line 1: no {id_name} field (the header has {list(types)})")
  if not len(table):
    raise DataError(f"{path}: no {id_name.split('_')[0]}s: the file has a header but no data lines; is it complete? "
                    f"(or remove it: without {path.name} the {id_name.split('_')[0]}s have no features)")
  keys = table.strings(id_name)
  check_unique_ids(keys, table, id_name)
  return keys, encode_fields(table, types, id_name, fields), table


def load_recbole(path: str | pathlib.Path, *, bad_rows: str = "error", duplicates: str = "last",
                 rating_scale: Sequence[float] = (), user_fields: Sequence[str] = (), item_fields: Sequence[str] = ()) -> Dataset:
  """Reads a RecBole atomic data set.

  Args:
    path: the folder with ``NAME.inter`` (and ``NAME.user``, ``NAME.item``).
    bad_rows: ``"error"`` or ``"drop"`` (see `checks`).
    duplicates: rule for repeated (user, item) pairs (see `checks`).
    rating_scale: ``(min, max)`` of valid ratings; empty: the observed range.
    user_fields: user fields to read (empty: all).
    item_fields: item fields to read (empty: all).

  Raises:
    MissingDataFile: no ``.inter`` file.
    DataError: a file is malformed.
  """
  directory = pathlib.Path(path)
  name = find_name(directory)
  reporter = Reporter(bad_rows)
  inter_table, types = read_atomic(directory / f"{name}.inter")
  if not len(inter_table):
    raise DataError(f"{inter_table.path}: no ratings: the file has a header but no data lines; is it complete?")
  for needed in (USER_ID, ITEM_ID, RATING):
    if needed not in types:
      raise DataError(f"{inter_table.path}, line 1: no {needed} field (the header has {list(types)}); "
                      "meta-learned rating prediction needs user_id, item_id and rating")
  raw_u, raw_i = inter_table.strings(USER_ID), inter_table.strings(ITEM_ID)
  rating = inter_table.floats(RATING)
  ts = (np.round(inter_table.floats(TIMESTAMP)).astype(np.int64) if TIMESTAMP in types else None)
  user_keys, u_fields, _ = _side(directory, name, "user", USER_ID, raw_u, user_fields, reporter)
  item_keys, i_fields, item_table = _side(directory, name, "item", ITEM_ID, raw_i, item_fields, reporter)
  u_fields = u_fields or [constant_field("user_constant", len(user_keys))]
  i_fields = i_fields or [constant_field("item_constant", len(item_keys))]
  scale = tuple(float(x) for x in rating_scale) if len(rating_scale) else None
  if scale is not None and len(scale) != 2:
    raise ValueError(f"data.rating_scale must be (min, max), got {rating_scale}")
  describe = lambda rows: [f"line {inter_table.lines[r]}: user {raw_u[r]} item {raw_i[r]} "
                           f"rating {rating[r]:g}" for r in rows]
  u, i, r, t = clean_ratings(lookup(user_keys, raw_u), lookup(item_keys, raw_i), rating, ts, scale=scale,
                             source=inter_table.path.name, user_table=f"{name}.user",
                             item_table=f"{name}.item", describe=describe, reporter=reporter,
                             duplicates=duplicates)
  if not len(r):
    raise DataError(f"{inter_table.path}: no ratings")
  if scale is None:
    scale = (float(r.min()), float(r.max()))
  item_year = None
  if item_table is not None:
    for field in YEAR_FIELDS:
      if field in item_table.names:
        texts = item_table.strings(field)
        ok = np.char.isdigit(texts) & (np.char.str_len(texts) == 4)
        item_year = np.where(ok, texts, "0").astype(np.int32)
        break
  return Dataset(
      name=name,
      interactions=Interactions(u, i, r, t),
      users=FeatureTable(tuple(f.spec for f in u_fields), {f.spec.name: f.column for f in u_fields}),
      items=FeatureTable(tuple(f.spec for f in i_fields), {f.spec.name: f.column for f in i_fields}),
      rating_scale=scale,
      item_year=item_year,
      user_raw_ids=user_keys,
      item_raw_ids=item_keys,
      notes=tuple(reporter.notes),
      source=f"recbole {directory}",
  )
