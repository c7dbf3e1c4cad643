"""Delimited text files -> string columns, vectorised, with line-exact errors.

`read_table` splits a whole file with a few C-level string operations and
numpy byte arithmetic (no Python loop per line): the separator is replaced by
one control character, the field count of every line is counted from the
bytes, and the flat token list is cut into columns. A line with the wrong
number of fields, a token that is not a number, text that is not in the
file's encoding: each raises a `DataError` naming the file, the line number
and the field.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Sequence

import numpy as np

_US = "\x1f"  # unit separator: stands in for the file's separator while splitting


class DataError(ValueError):
  """A data file is malformed or inconsistent; the message says where and how."""


class MissingDataFile(FileNotFoundError):
  """A data file the reader needs is absent; the message says how to fetch it."""


class DataWarning(UserWarning):
  """A data problem that was resolved by a documented rule (duplicates, dropped rows)."""


def require(directory: str | pathlib.Path, name: str, download: str | None = None) -> pathlib.Path:
  """Returns ``directory / name``, or raises naming the file and how to fetch it.

  Args:
    directory: the data directory.
    name: the file name.
    download: the name ``metarec data download`` knows this data set by, if any.

  Raises:
    MissingDataFile: the file does not exist.
  """
  directory = pathlib.Path(directory)
  path = directory / name
  if not path.is_file():
    if not directory.is_dir():
      where = f"data directory {directory} does not exist"
    else:
      where = f"{path} not found"
    hint = (f"; fetch it with: metarec data download {download} --to {directory}" if download
            else "")
    raise MissingDataFile(f"{where} (needed: {name}){hint}")
  return path


def read_text(path: pathlib.Path, encoding: str) -> str:
  """Reads a whole file as text with ``\\n`` line ends.

  Raises:
    DataError: the bytes are not valid in ``encoding`` (names the line).
  """
  raw = path.read_bytes()
  if b"\r" in raw:
    raw = raw.replace(b"\r\n", b"\n")
  try:
    return raw.decode(encoding)
  except UnicodeDecodeError as e:
    line = raw.count(b"\n", 0, e.start) + 1
    raise DataError(f"{path}, line {line}: bytes that are not valid {encoding} ({e.reason}); "
                    "is this the right file?") from None


@dataclasses.dataclass
class Table:
  """String columns of a delimited file, plus the line number of every row.

  Attributes:
    path: the file read.
    names: field names, in file order.
    columns: field name -> list of the row's token strings.
    lines: ``int64 [n]`` 1-based line number of each row in the file.
  """

  path: pathlib.Path
  names: tuple[str, ...]
  columns: dict[str, list[str]]
  lines: np.ndarray

  def __len__(self) -> int:
    return len(self.lines)

  def error(self, row: int, field: str, message: str) -> DataError:
    """A `DataError` for one row and field of this file."""
    return DataError(f"{self.path}, line {int(self.lines[row])}, field '{field}': {message}")

  def strings(self, name: str, strip: bool = True) -> np.ndarray:
    """The column as a numpy string array (stripped of surrounding spaces)."""
    arr = np.asarray(self.columns[name], dtype=str) if len(self) else np.zeros(0, dtype=str)
    return np.char.strip(arr) if strip and len(arr) else arr

  def ints(self, name: str) -> np.ndarray:
    """The column parsed as ``int64``.

    Raises:
      DataError: a token is not an integer (names the first such line).
    """
    return self._numbers(name, np.int64, "an integer")

  def floats(self, name: str, allow_empty: bool = False) -> np.ndarray:
    """The column parsed as ``float64`` (empty tokens -> NaN if ``allow_empty``).

    Raises:
      DataError: a token is not a number (names the first such line).
    """
    col = self.columns[name]
    if allow_empty and len(col):
      arr = np.char.strip(np.asarray(col, dtype=str))
      col = np.where(arr == "", "nan", arr)
    return self._numbers(name, np.float64, "a number", col)

  def _numbers(self, name: str, dtype, what: str, col=None) -> np.ndarray:
    col = self.columns[name] if col is None else col
    if not len(col):
      return np.zeros(0, dtype)
    try:
      return np.array(col, dtype=dtype)
    except (ValueError, OverflowError):
      pass
    for row, token in enumerate(col):  # error path only: find the first bad token
      try:
        np.array([token], dtype=dtype)
      except (ValueError, OverflowError):
        raise self.error(row, name, f"{token!r} is not {what}") from None
    raise DataError(f"{self.path}: field '{name}' could not be parsed as {what}")


def read_table(path: str | pathlib.Path, sep: str, names: Sequence[str] | None = None, *,
               encoding: str = "utf-8", header: bool = False) -> Table:
  """Splits a delimited text file into string columns (vectorised).

  Blank lines are skipped (line numbers still count them). Every other line
  must have exactly ``len(names)`` fields.

  Args:
    path: the file.
    sep: field separator (any string, e.g. ``"::"``, ``"|"``, ``"\\t"``).
    names: field names; with ``header=True`` and ``names=None`` the first line
      gives them.
    encoding: text encoding of the file (MovieLens: ``latin-1``).
    header: the first line is a header (skipped as data).

  Returns:
    A `Table`.

  Raises:
    DataError: undecodable bytes or a line with the wrong number of fields.
  """
  path = pathlib.Path(path)
  text = read_text(path, encoding)
  if _US in text:
    raise DataError(f"{path}: contains the control character U+001F; cannot be split safely")
  first_line = 1
  if header:
    head, _, text = text.partition("\n")
    first_line = 2
    if names is None:
      names = [n.strip() for n in head.split(sep)]
  if names is None:
    raise ValueError("read_table needs names or header=True")
  names = tuple(names)
  k = len(names)
  text = text.replace(sep, _US)
  if text.endswith("\n"):
    text = text[:-1]
  if not text:
    return Table(path, names, {n: [] for n in names}, np.zeros(0, np.int64))
  b = np.frombuffer(text.encode("utf-8"), np.uint8)
  newlines = np.flatnonzero(b == 10)
  n_lines = len(newlines) + 1
  starts = np.concatenate([[0], newlines + 1])
  ends = np.concatenate([newlines, [len(b)]])
  blank = ends == starts
  seps = np.flatnonzero(b == 31)
  fields = np.bincount(np.searchsorted(newlines, seps), minlength=n_lines) + 1
  bad = (fields != k) & ~blank
  line_no = np.arange(n_lines, dtype=np.int64) + first_line
  if bad.any():
    i = int(np.flatnonzero(bad)[0])
    got = int(fields[i])
    what = (f"field '{names[got]}' is missing" if got < k
            else f"{got - k} extra field(s) after '{names[-1]}'")
    raise DataError(f"{path}, line {int(line_no[i])}: expected {k} fields separated by {sep!r}, "
                    f"found {got}: {what} ({int(bad.sum())} such line(s) in the file)")
  lines = text.split("\n")
  if blank.any():
    lines = list(filter(None, lines))
    line_no = line_no[~blank]
  tokens = _US.join(lines).split(_US)
  columns = {n: tokens[j::k] for j, n in enumerate(names)}
  return Table(path, names, columns, line_no)


def split_lists(values: Sequence[str], delim: str) -> tuple[list[str], np.ndarray]:
  """Splits every string of ``values`` at ``delim`` (vectorised).

  Returns:
    The flat list of stripped tokens and ``int64 [len(values)]`` tokens per
    value (an empty value has one empty token).
  """
  if not len(values):
    return [], np.zeros(0, np.int64)
  joined = _US.join(values)
  if delim != _US:
    counts = np.char.count(np.asarray(values, dtype=str), delim) + 1
    flat = joined.replace(delim, _US).split(_US)
  else:
    flat = joined.split(_US)
    counts = np.ones(len(values), np.int64)
  flat_arr = np.char.strip(np.asarray(flat, dtype=str))
  return flat_arr.tolist(), counts.astype(np.int64)


def lookup(keys: np.ndarray, query: np.ndarray) -> np.ndarray:
  """Row of each query value in ``keys`` (vectorised), -1 where absent.

  ``keys`` must be unique; strings and integers both work.
  """
  keys = np.asarray(keys)
  query = np.asarray(query)
  if not len(keys):
    return np.full(query.shape, -1, np.int64)
  order = np.argsort(keys, kind="stable")
  sorted_keys = keys[order]
  pos = np.clip(np.searchsorted(sorted_keys, query), 0, len(keys) - 1)
  found = sorted_keys[pos] == query
  return np.where(found, order[pos], -1).astype(np.int64)


def check_unique_ids(ids: np.ndarray, table: Table, field: str) -> None:
  """Raises if an id occurs on two lines of ``table``.

  Raises:
    DataError: names the id and both lines.
  """
  if len(ids) < 2:
    return
  order = np.argsort(ids, kind="stable")
  s = ids[order]
  dup = np.flatnonzero(s[1:] == s[:-1])
  if len(dup):
    a, b = order[dup[0]], order[dup[0] + 1]
    raise DataError(f"{table.path}, line {int(table.lines[b])}, field '{field}': id {s[dup[0]]!s} "
                    f"already appears on line {int(table.lines[a])} ({len(dup)} repeated id(s) in "
                    "the file)")
