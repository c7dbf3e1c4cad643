"""Delimited text files -> string columns, vectorised, with line-exact errors.

`read_table` splits a whole file with a few C-level string operations and
numpy byte arithmetic (no Python loop per line): the separator is replaced by
one control character, the field count of every line is counted from the
bytes, and the flat token list is cut into columns. A line with the wrong
number of fields, a token that is not a number, text that is not in the
file's encoding: each raises a `DataError` naming the file, the line number
and the field.

`read_numeric_csv` is the fast path for large files of numbers only (ML-25M's
``ratings.csv``): blocks of lines through numpy's C reader into columns
allocated once, with `read_table` as the fallback that names a bad line.
"""

from __future__ import annotations

import dataclasses
import io
import pathlib
from typing import Any, Sequence

import numpy as np

_US = "\x1f"  # unit separator: stands in for the file's separator while splitting


class DataError(ValueError):
  """A data file is malformed or inconsistent; the message says where and how."""


class MissingDataFile(FileNotFoundError):
  """A data file the reader needs is absent; the message says how to fetch it."""


class DataWarning(UserWarning):
  """A data problem that was resolved by a documented rule (duplicates, dropped rows)."""


def require(directory: str | pathlib.Path, name: str, download: str | None = None,
            source: str | None = None) -> pathlib.Path:
  """Returns ``directory / name``, or raises naming the file and how to fetch it.

  Args:
    directory: the data directory.
    name: the file name.
    download: the name ``metarec data download`` knows this data set by, if any.
    source: where to get the file otherwise (e.g. a web page), if known.

  Raises:
    MissingDataFile: the file or the directory does not exist.
    DataError: the directory is a file, or the file is a folder.
  """
  directory = pathlib.Path(directory)
  check_folder(directory)
  path = directory / name
  if path.is_dir():
    raise DataError(f"{path} is a folder, not a file: the data folder must hold the file {name} itself")
  if not path.is_file():
    if not directory.is_dir():
      where = f"data directory {directory} does not exist"
    else:
      where = f"{path} not found"
    hint = (f"; fetch it with: metarec data download {download} --to {directory}" if download
            else f"; get it from {source}" if source else "")
    raise MissingDataFile(f"{where} (needed: {name}){hint}")
  return path


def check_folder(directory: str | pathlib.Path) -> None:
  """Raises if ``directory`` is a file (a data set is a folder of files).

  Raises:
    DataError: ``directory`` is a file (the message says to give its folder).
  """
  directory = pathlib.Path(directory)
  if directory.is_file():
    raise DataError(f"{directory} is a file, not a folder: give the folder that holds the data set's files "
                    f"(here {directory.parent})")


def read_bytes(path: pathlib.Path) -> bytes:
  """The bytes of a file; an unreadable file or a folder becomes a one-line `DataError`.

  Raises:
    MissingDataFile: the file does not exist.
    DataError: the path is a folder, or the file cannot be read (permissions, I/O error).
  """
  try:
    return path.read_bytes()
  except IsADirectoryError:
    raise DataError(f"{path} is a folder, not a file") from None
  except FileNotFoundError:
    raise MissingDataFile(f"{path} not found") from None
  except OSError as e:
    raise DataError(f"{path}: cannot read the file ({e.strerror or e}); check its permissions") from None


def require_rows(table: "Table", what: str) -> "Table":
  """Returns ``table``, or raises when it has no data lines.

  Raises:
    DataError: the file holds no rows (names the file and what it should hold).
  """
  if not len(table):
    raise DataError(f"{table.path}: no {what}: the file has no data lines; is it complete?")
  return table


def read_text(path: pathlib.Path, encoding: str) -> str:
  """Reads a whole file as text with ``\\n`` line ends.

  Raises:
    DataError: the bytes are not valid in ``encoding`` (names the line).
  """
  raw = read_bytes(path)
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
    line = b[starts[i]:ends[i]].tobytes().decode("utf-8").replace(_US, sep)
    raise DataError(f"{path}, line {int(line_no[i])}: expected {k} fields separated by {sep!r}, "
                    f"found {got}: {what} ({int(bad.sum())} such line(s) in the file)"
                    f"{separator_hint(line, sep, k)}")
  lines = text.split("\n")
  if blank.any():
    lines = list(filter(None, lines))
    line_no = line_no[~blank]
  tokens = _US.join(lines).split(_US)
  columns = {n: tokens[j::k] for j, n in enumerate(names)}
  return Table(path, names, columns, line_no)


SEPARATORS = ("\t", "::", "|", ",", ";", ":", " ")


def separator_hint(line: str, sep: str, k: int) -> str:
  """``"; the line looks separated by ','..."`` when ``line`` lacks ``sep`` and another common separator
  splits it into ``k`` fields; else ``""``."""
  if k < 2 or sep in line:
    return ""
  for other in SEPARATORS:
    if other != sep and line.count(other) == k - 1:
      return f"; the line looks separated by {other!r}: this file must use {sep!r}"
  return ""


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


@dataclasses.dataclass
class NumericTable:
  """Number columns of a delimited file (`read_numeric_csv`).

  Attributes:
    path: the file read.
    columns: field name -> ``int64`` or ``float64 [n]``.
    lines: ``int64 [n]`` line number of each row, or ``None`` when row ``r``
      is line ``r + first_line`` (no blank lines: the fast path).
    first_line: line number of row 0 when ``lines`` is ``None``.
  """

  path: pathlib.Path
  columns: dict[str, np.ndarray]
  lines: np.ndarray | None = None
  first_line: int = 1

  def line_numbers(self, rows: np.ndarray) -> np.ndarray:
    """1-based line numbers of the given rows."""
    rows = np.asarray(rows, np.int64)
    return rows + self.first_line if self.lines is None else self.lines[rows]


def read_numeric_csv(path: str | pathlib.Path, names: Sequence[str], *, integers: Sequence[str] = (),
                     dtypes: dict[str, Any] | None = None, sep: str = ",", header: bool = True,
                     chunk_bytes: int = 1 << 26) -> NumericTable:
  """Reads a delimited file of numbers only (e.g. ML-25M's ``ratings.csv``), fast and in bounded memory.

  The fast path makes two passes over the file in blocks of about
  ``chunk_bytes`` cut at line ends: the first counts the lines, so the output
  columns are allocated once at their final size and type; the second hands
  each block to numpy's C reader (``np.loadtxt`` on the block's bytes; since
  numpy 1.23 it is C code, about 0.3 us per line of four fields, 2-3x
  ``np.fromstring(..., sep=",")``) and stores its columns. Memory is the
  output columns plus a few blocks. Each block is checked (separators per
  line, rows per block, whole numbers in ``integers`` fields, values that fit
  ``dtypes``); if any check fails, the file is read again by `read_table`,
  whose errors name the file, line and field (and which also accepts what
  the fast path does not, such as blank lines).

  Args:
    path: the file.
    names: field names, in file order.
    integers: fields that must hold whole numbers (``int64`` unless ``dtypes`` says otherwise).
    dtypes: output type per field (default ``int64`` for ``integers``, ``float64`` for the rest).
    sep: single-character field separator.
    header: the first line is a header and must list ``names`` (in order).
    chunk_bytes: block size of the fast path.

  Returns:
    A `NumericTable`.

  Raises:
    DataError: a wrong header, a line with the wrong number of fields, a
      token that is not a number, a non-integer in an ``integers`` field.
  """
  path = pathlib.Path(path)
  names = tuple(names)
  k = len(names)
  if len(sep) != 1 or sep in "\n\r.-+0123456789eE":
    raise ValueError(f"read_numeric_csv needs a one-character separator that is not part of a number, got {sep!r}")
  types = {n: np.dtype(np.int64 if n in integers else np.float64) for n in names}
  types.update({n: np.dtype(t) for n, t in (dtypes or {}).items()})
  first = 2 if header else 1
  rows = sum(block.count(b"\n") for block in _blocks(path, header, chunk_bytes, sep, names))
  out = {n: np.empty(rows, types[n]) for n in names}
  at = 0
  for block in _blocks(path, header, chunk_bytes, sep, names):
    values = _numbers_block(block, sep.encode(), k)
    if values is None or at + len(values) > rows:
      return _numeric_slow(path, names, integers, sep, header, types)
    for j, name in enumerate(names):
      col = values[:, j]
      if name in integers and not np.all(col == np.floor(col)):
        return _numeric_slow(path, names, integers, sep, header, types)
      if types[name].kind in "iu":
        info = np.iinfo(types[name])
        if len(col) and (col.min() < info.min or col.max() > info.max):
          return _numeric_slow(path, names, integers, sep, header, types)
      out[name][at:at + len(col)] = col
    at += len(values)
  if at != rows:
    return _numeric_slow(path, names, integers, sep, header, types)
  return NumericTable(path, out, None, first)


def _blocks(path: pathlib.Path, header: bool, chunk_bytes: int, sep: str, names: tuple[str, ...]):
  """Yields the file's data in blocks of whole lines (each ending in a newline), after checking the header."""
  try:
    f = open(path, "rb")
  except OSError as e:
    raise DataError(f"{path}: cannot read the file ({e.strerror or e}); check its permissions") from None
  with f:
    if header:
      head = f.readline().decode("utf-8", "replace").strip().lstrip("\ufeff")
      if not head:
        raise DataError(f"{path}, line 1: no header: the file is empty or starts with a blank line "
                        f"(expected {sep.join(names)!r})")
      if tuple(h.strip() for h in head.split(sep)) != names:
        raise DataError(f"{path}, line 1: header {head!r}, expected {sep.join(names)!r}"
                        f"{separator_hint(head, sep, len(names))}")
    tail = b""
    while True:
      block = f.read(chunk_bytes)
      data = tail + block
      if not block:
        if data:
          yield data if data.endswith(b"\n") else data + b"\n"
        return
      cut = data.rfind(b"\n") + 1
      data, tail = data[:cut], data[cut:]
      if data:
        yield data


def _numbers_block(data: bytes, sep: bytes, k: int) -> np.ndarray | None:
  """``float64 [lines, k]`` of one block of whole lines, or None where the fast path cannot be trusted."""
  if b"\r" in data:
    data = data.replace(b"\r\n", b"\n")
  lines = data.count(b"\n")
  if data.count(sep) != (k - 1) * lines:
    return None
  try:
    values = np.loadtxt(io.BytesIO(data), delimiter=sep.decode(), dtype=np.float64, comments=None, ndmin=2,
                        encoding="latin-1")
  except ValueError:
    return None
  if values.shape != (lines, k):  # e.g. a blank line, which np.loadtxt skips
    return None
  return values


def _numeric_slow(path: pathlib.Path, names: tuple[str, ...], integers: Sequence[str], sep: str,
                  header: bool, types: dict[str, np.dtype]) -> NumericTable:
  """`read_numeric_csv` by `read_table`: line-exact errors, or the columns if the file is fine after all."""
  table = read_table(path, sep, names if not header else None, header=header)
  if table.names != names:
    raise DataError(f"{path}, line 1: header {sep.join(table.names)!r}, expected {sep.join(names)!r}")
  columns = {n: table.ints(n) if n in integers else table.floats(n) for n in names}
  for n, col in columns.items():
    if types[n].kind in "iu" and len(col) and (col.min() < np.iinfo(types[n]).min or col.max() > np.iinfo(types[n]).max):
      row = int(np.flatnonzero((col < np.iinfo(types[n]).min) | (col > np.iinfo(types[n]).max))[0])
      raise table.error(row, n, f"{col[row]} does not fit {types[n]}")
  return NumericTable(path, {n: col.astype(types[n]) for n, col in columns.items()}, table.lines)
