"""Bad input: every case tried gets one line on stderr, exit status 2, and leaves its folder untouched.

`CASES` is the table of every bad input tried: the input, an example, the
folder or file it is written as, the ``metarec`` command, and a regex the
one-line message must match. `tools/bad_input_table.py` prints the same
table with the messages the cases get (``docs/bad_input.md``).

Each case runs through `metarec_jax.cli.main` (``metarec data info`` for
data folders, ``metarec config`` for configs, ``metarec run`` for two cases
that fail before anything is compiled), and
must give exit status 2, exactly one stderr line, no traceback, the message
regex, and the same files (size and sha256) in its folder before and after.
The second test reads every shipped data set a reader supports and compares
the sha256 of every file of its folder before and after.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import re
import warnings
from typing import Callable

import pytest

from metarec_jax.cli import main
from metarec_jax.data.parsing import DataWarning
from tests.data.test_lastfm import write_lastfm
from tests.data.tiny_files import write_melu, write_ml100k, write_ml1m, write_recbole

Content = str | bytes | Callable[[str], str]
REPO = pathlib.Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class Case:
  """One bad input.

  Attributes:
    id: the test id.
    input: the kind of bad input (first column of the table).
    example: what was written (second column).
    make: ``folder -> path``: writes the bad folder or file inside ``folder``
      and returns the path the command gets.
    argv: the command, with ``{path}`` where the path goes and ``{scratch}``
      where a folder outside ``folder`` goes (a run's workdir).
    pattern: a regex the one-line message must match (searched).
  """

  id: str
  input: str
  example: str
  make: Callable[[pathlib.Path], pathlib.Path]
  argv: tuple[str, ...]
  pattern: str


INFO = ("data", "info", "{path}")


def _edit(write, name: str | None = None, content: Content | None = None, **kwargs):
  """A ``make`` that writes a tiny folder with ``write`` and then replaces (or edits) one file."""

  def make(folder: pathlib.Path) -> pathlib.Path:
    d = write(folder / "data", **kwargs)
    if name is not None:
      path = d / name
      if callable(content):
        path.write_text(content(path.read_text(encoding="latin-1")), encoding="latin-1")
      elif isinstance(content, bytes):
        path.write_bytes(content)
      else:
        path.write_text(content, encoding="utf-8")
    return d

  return make


def _replace_line(n: int, new: str) -> Callable[[str], str]:
  """Replaces line ``n`` (1-based) of a file."""

  def edit(text: str) -> str:
    lines = text.split("\n")
    lines[n - 1] = new
    return "\n".join(lines)

  return edit


def _append(extra: str) -> Callable[[str], str]:
  return lambda text: text + extra


def _remove(write, name: str):
  def make(folder):
    d = write(folder / "data")
    (d / name).unlink()
    return d
  return make


def _folder_as(write, name: str):
  """A tiny folder where the file ``name`` is a folder."""
  def make(folder):
    d = write(folder / "data")
    (d / name).unlink()
    (d / name).mkdir()
    (d / name / "x").write_text("x")
    return d
  return make


def _bytes_into(write, name: str, data: bytes, **kwargs):
  """A tiny folder whose file ``name`` holds ``data`` (raw bytes)."""
  def make(folder):
    d = write(folder / "data", **kwargs)
    (d / name).write_bytes(data)
    return d
  return make


def _empty_folder(folder):
  d = folder / "data"
  d.mkdir()
  return d


def _a_file(folder):
  d = folder / "data"
  d.mkdir()
  (d / "u.data").write_text("1\t1\t5\t1\n")
  return d / "u.data"


def _melu_states(**states):
  """MeLU's tiny release with some state files replaced: stem -> (x, y) as JSON values or raw text."""
  def make(folder):
    d = write_melu(folder / "data")
    for stem, (x, y) in states.items():
      for suffix, obj in (("", x), ("_y", y)):
        if obj is not None:
          (d / f"{stem}{suffix}.json").write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return d
  return make


CSV_HEAD = "userId,movieId,rating,timestamp\n"


def _ratings_csv(text: str | bytes, movies: str | None = None):
  """A MovieLens ``ratings.csv`` release (ML-20M and later) with ``text`` as its ratings file."""
  def make(folder):
    d = folder / "ml-25m"
    d.mkdir()
    (d / "ratings.csv").write_bytes(text if isinstance(text, bytes) else text.encode())
    if movies is not None:
      (d / "movies.csv").write_text(movies)
    return d
  return make


CSV_ROWS = "".join(f"{u},{i},{1 + (u + i) % 5}.0,{1000 * u + i}\n" for u in range(1, 4) for i in range(1, 5))


def _experiment(body: str):
  """An experiment file with ``body`` (under ``folder/exp``)."""
  def make(folder):
    d = folder / "exp"
    d.mkdir()
    (d / "bad_experiment.py").write_text(body)
    return d / "bad_experiment.py"
  return make


GOOD_EXPERIMENT = _experiment("from metarec_jax import default_config\n\n\ndef get_config():\n"
                              "  c = default_config()\n  c.methods = ('global_mean', 'maml')\n  return c\n")


def _config(*sets: str) -> tuple[str, ...]:
  out = ("config", "{path}")
  for s in sets:
    out += ("--set", s)
  return out


ML100K, ML1M, MELU, RECBOLE, LASTFM = (write_ml100k, write_ml1m, write_melu, write_recbole, write_lastfm)
R_HEAD = "user_id:token\titem_id:token\trating:float\n"

CASES = [
    # -- truncated lines ---------------------------------------------------------------------------------
    Case("ml100k-truncated", "truncated line", "ML-100K `u.data` line 3 is `1\\t3` (user, item only)",
         _edit(ML100K, "u.data", _replace_line(3, "1\t3")), INFO,
         r"u\.data, line 3: expected 4 fields separated by '\\t', found 2: field 'rating' is missing"),
    Case("ml100k-truncated-user", "truncated line", "ML-100K `u.user` line 2 cut after the age",
         _edit(ML100K, "u.user", _replace_line(2, "2|53")), INFO,
         r"u\.user, line 2: expected 5 fields separated by '\|', found 2: field 'gender' is missing"),
    Case("ml100k-truncated-item", "truncated line", "ML-100K `u.item` line 4 cut inside the genre flags",
         _edit(ML100K, "u.item", _replace_line(4, "4|Titanic (1997)|01-Jan-1997||http://x|0|1")), INFO,
         r"u\.item, line 4: expected 9 fields separated by '\|', found 7: field 'genre_2' is missing"),
    Case("ml1m-truncated", "truncated line", "ML-1M `ratings.dat` ends in `3::4::` (file cut mid-line)",
         _edit(ML1M, "ratings.dat", _append("3::4::")), INFO,
         r"ratings\.dat, line 13: expected 4 fields separated by '::', found 3: field 'timestamp' is missing"),
    Case("melu-truncated", "truncated line", "MeLU `movies_extrainfos.dat` line 2 has 10 of 11 fields",
         _edit(MELU, "movies_extrainfos.dat", lambda t: t.replace("Robin Williams::A plot.::http://poster",
                                                                  "Robin Williams::A plot.")), INFO,
         r"movies_extrainfos\.dat, line 2: expected 11 fields separated by '::', found 10: field 'poster' is missing"),
    Case("recbole-truncated", "truncated line", "RecBole `tiny.inter` line 5 lacks the timestamp",
         _edit(RECBOLE, "tiny.inter", _replace_line(5, "u1\tm4\t3")), INFO,
         r"tiny\.inter, line 5: expected 4 fields separated by '\\t', found 3: field 'timestamp' is missing"),
    Case("csv-truncated", "truncated line", "ML-25M `ratings.csv` line 4 is `1,3,5.0` (no timestamp)",
         _ratings_csv(CSV_HEAD + CSV_ROWS.replace("1,3,5.0,1003", "1,3,5.0")), INFO,
         r"ratings\.csv, line 4: expected 4 fields separated by ',', found 3: field 'timestamp' is missing"),
    Case("lastfm-truncated", "truncated line", "Last.fm `user_artists.dat` line 3 is `2\\t20`",
         _edit(LASTFM, "user_artists.dat", _replace_line(3, "2\t20")), INFO,
         r"user_artists\.dat, line 3: expected 3 fields separated by '\\t', found 2: field 'weight' is missing"),
    Case("melu-json-truncated", "truncated file", "MeLU `warm_state.json` cut in the middle",
         _melu_states(warm_state=('{"1": ["1", "2"], "2": ["2",', None)), INFO,
         r"warm_state\.json, line 1, column \d+: not valid JSON"),
    # -- wrong separators --------------------------------------------------------------------------------
    Case("ml100k-commas", "wrong separator", "ML-100K `u.data` separated by commas",
         _edit(ML100K, "u.data", lambda t: t.replace("\t", ",")), INFO,
         r"u\.data, line 1: expected 4 fields separated by '\\t', found 1.*separated by ','"),
    Case("ml100k-spaces", "wrong separator", "ML-100K `u.data` separated by spaces",
         _edit(ML100K, "u.data", lambda t: t.replace("\t", " ")), INFO,
         r"u\.data, line 1: expected 4 fields separated by '\\t', found 1.*separated by ' '"),
    Case("ml1m-tabs", "wrong separator", "ML-1M `users.dat` separated by tabs",
         _edit(ML1M, "users.dat", lambda t: t.replace("::", "\t")), INFO,
         r"users\.dat, line 1: expected 5 fields separated by '::', found 1.*separated by '\\t'"),
    Case("ml1m-single-colon", "wrong separator", "ML-1M `ratings.dat` separated by `:`",
         _edit(ML1M, "ratings.dat", lambda t: t.replace("::", ":")), INFO,
         r"ratings\.dat, line 1: expected 4 fields separated by '::', found 1.*separated by ':'"),
    Case("melu-bars", "wrong separator", "MeLU `users.dat` separated by `|`",
         _edit(MELU, "users.dat", lambda t: t.replace("::", "|")), INFO,
         r"users\.dat, line 1: expected 5 fields separated by '::', found 1.*separated by '\|'"),
    Case("recbole-commas", "wrong separator", "RecBole `tiny.inter` separated by commas",
         _edit(RECBOLE, "tiny.inter", lambda t: t.replace("\t", ",")), INFO,
         r"tiny\.inter, line 1: RecBole atomic files are tab-separated, but this header is separated by commas"),
    Case("recbole-rows-commas", "wrong separator", "RecBole `tiny.user`: header with tabs, rows with commas",
         _edit(RECBOLE, user="user_id:token\tage:token\nu1,24\nu2,53\n"), INFO,
         r"tiny\.user, line 2: expected 2 fields separated by '\\t', found 1.*separated by ','"),
    Case("csv-semicolons", "wrong separator", "ML-25M `ratings.csv` separated by `;`",
         _ratings_csv((CSV_HEAD + CSV_ROWS).replace(",", ";")), INFO,
         r"ratings\.csv, line 1: header 'userId;movieId;rating;timestamp', expected "
         r"'userId,movieId,rating,timestamp'; the line looks separated by ';': this file must use ','"),
    Case("lastfm-commas", "wrong separator", "Last.fm `user_friends.dat` separated by commas",
         _edit(LASTFM, "user_friends.dat", lambda t: t.replace("\t", ",")), INFO,
         r"user_friends\.dat, line 2: expected 2 fields separated by '\\t', found 1.*separated by ','"),
    # -- non-UTF-8 bytes ---------------------------------------------------------------------------------
    Case("melu-latin1", "non-UTF-8 bytes", "MeLU `movies_extrainfos.dat` (UTF-8) with a Latin-1 `é` on line 3",
         _edit(MELU, "movies_extrainfos.dat",
               lambda t: t.replace("Finding Nemo", "Finding N\xe9mo")), INFO,
         r"movies_extrainfos\.dat, line 3: bytes that are not valid utf-8"),
    Case("melu-json-bytes", "non-UTF-8 bytes", "MeLU `user_cold_state_y.json` with a byte 0xff",
         _bytes_into(MELU, "user_cold_state_y.json", b'{"3": [1],\n "4": [2, 3\xff]}'), INFO,
         r"user_cold_state_y\.json, line 2: bytes that are not valid utf-8"),
    Case("melu-vocab-bytes", "non-UTF-8 bytes", "MeLU `m_actor.txt` with a byte 0xff on line 2",
         _edit(MELU, "m_actor.txt", b"Tom Hanks\nn\xffn\nTim Allen\n"), INFO,
         r"m_actor\.txt, line 2: bytes that are not valid utf-8"),
    Case("recbole-bytes", "non-UTF-8 bytes", "RecBole `tiny.item` with a byte 0xff on line 3",
         _bytes_into(RECBOLE, "tiny.item", b"item_id:token\tname:token\nm1\tA\nm2\tB\xff\n"), INFO,
         r"tiny\.item, line 3: bytes that are not valid utf-8"),
    Case("lastfm-bytes", "non-UTF-8 bytes", "Last.fm `artists.dat` with a byte 0xe9 on line 3",
         _edit(LASTFM, "artists.dat",
               b"id\tname\turl\tpictureURL\n10\tA\tu\tp\n20\tB\xe9\tu\tp\n30\tC\tu\tp\n"), INFO,
         r"artists\.dat, line 3: bytes that are not valid utf-8"),
    Case("ml100k-binary", "non-UTF-8 bytes", "ML-100K (Latin-1) `u.data` line 2 holds binary bytes",
         _edit(ML100K, "u.data", _replace_line(2, "1\t\xff\xfe\t5\t1")), INFO,
         r"u\.data, line 2, field 'item_id': '\xff\xfe' is not an integer"),
    # -- empty files and folders ---------------------------------------------------------------------------
    Case("ml100k-empty-ratings", "empty file", "ML-100K `u.data` of 0 bytes",
         _edit(ML100K, "u.data", ""), INFO, r"u\.data.*no ratings"),
    Case("ml100k-empty-users", "empty file", "ML-100K `u.user` of 0 bytes",
         _edit(ML100K, "u.user", ""), INFO, r"u\.user.*no users"),
    Case("ml100k-empty-items", "empty file", "ML-100K `u.item` of 0 bytes",
         _edit(ML100K, "u.item", ""), INFO, r"u\.item.*no items"),
    Case("ml100k-empty-genres", "empty file", "ML-100K `u.genre` of 0 bytes",
         _edit(ML100K, "u.genre", ""), INFO, r"u\.genre.*no genres"),
    Case("ml100k-empty-occupations", "empty file", "ML-100K `u.occupation` of 0 bytes",
         _edit(ML100K, "u.occupation", ""), INFO, r"u\.occupation.*no occupations"),
    Case("ml1m-empty-ratings", "empty file", "ML-1M `ratings.dat` of 0 bytes",
         _edit(ML1M, "ratings.dat", ""), INFO, r"ratings\.dat.*no ratings"),
    Case("ml1m-empty-movies", "empty file", "ML-1M `movies.dat` of 0 bytes",
         _edit(ML1M, "movies.dat", ""), INFO, r"movies\.dat.*no movies"),
    Case("melu-empty-users", "empty file", "MeLU `users.dat` of 0 bytes",
         _edit(MELU, "users.dat", ""), INFO, r"users\.dat: no users"),
    Case("melu-empty-vocab", "empty file", "MeLU `m_gender.txt` of 0 bytes",
         _edit(MELU, "m_gender.txt", ""), INFO, r"m_gender\.txt.*empty"),
    Case("melu-empty-json", "empty file", "MeLU `item_cold_state_y.json` of 0 bytes",
         _melu_states(item_cold_state=(None, "")), INFO, r"item_cold_state_y\.json.*empty"),
    Case("melu-empty-state", "empty file", "MeLU `user_cold_state.json` and its `_y` are `{}`",
         _melu_states(user_cold_state=({}, {})), INFO, r"user_cold_state\.json: no users"),
    Case("recbole-empty-inter", "empty file", "RecBole `tiny.inter` of 0 bytes",
         _edit(RECBOLE, "tiny.inter", ""), INFO, r"tiny\.inter.*empty"),
    Case("recbole-header-only", "empty file", "RecBole `tiny.inter` with only its header line",
         _edit(RECBOLE, "tiny.inter", R_HEAD), INFO, r"tiny\.inter.*no ratings"),
    Case("recbole-empty-user", "empty file", "RecBole `tiny.user` of 0 bytes",
         _edit(RECBOLE, "tiny.user", ""), INFO, r"tiny\.user.*empty"),
    Case("recbole-header-only-user", "empty file", "RecBole `tiny.user` with only its header line",
         _edit(RECBOLE, "tiny.user", "user_id:token\tage:token\n"), INFO, r"tiny\.user: no users"),
    Case("csv-empty", "empty file", "ML-25M `ratings.csv` of 0 bytes", _ratings_csv(""), INFO,
         r"ratings\.csv, line 1: no header: the file is empty"),
    Case("csv-header-only", "empty file", "ML-25M `ratings.csv` with only its header", _ratings_csv(CSV_HEAD), INFO,
         r"ratings\.csv: no ratings"),
    Case("csv-movies-header-only", "empty file", "ML-25M `movies.csv` with only its header",
         _ratings_csv(CSV_HEAD + CSV_ROWS, movies="movieId,title,genres\n"), INFO, r"movies\.csv: no movies"),
    Case("lastfm-empty-plays", "empty file", "Last.fm `user_artists.dat` with only its header",
         _edit(LASTFM, "user_artists.dat", "userID\tartistID\tweight\n"), INFO,
         r"user_artists\.dat.*no play counts"),
    Case("lastfm-empty-artists", "empty file", "Last.fm `artists.dat` of 0 bytes",
         _edit(LASTFM, "artists.dat", ""), INFO, r"artists\.dat: no artists"),
    Case("empty-folder", "empty folder", "an empty folder", _empty_folder, INFO,
         r"holds no known data set: expected MeLU's release"),
    Case("empty-folder-melu", "empty folder", "an empty folder with `--format melu`", _empty_folder,
         INFO + ("--format", "melu"), r"users\.dat not found.*metarec data download melu-ml1m"),
    Case("empty-folder-movielens", "empty folder", "an empty folder with `--format movielens`", _empty_folder,
         INFO + ("--format", "movielens"), r"no MovieLens ratings in .*metarec data download ml-100k"),
    Case("empty-folder-recbole", "empty folder", "an empty folder with `--format recbole`", _empty_folder,
         INFO + ("--format", "recbole"), r"no RecBole \.inter file in"),
    Case("empty-folder-lastfm", "empty folder", "an empty folder with `--format lastfm`", _empty_folder,
         INFO + ("--format", "lastfm"), r"artists\.dat not found"),
    Case("missing-file", "missing file", "ML-100K without `u.item`", _remove(ML100K, "u.item"), INFO,
         r"u\.item not found.*metarec data download ml-100k"),
    # -- a file where a folder is expected, a folder where a file is ---------------------------------------
    Case("file-for-folder", "file where a folder is expected", "`metarec data info u.data` (the file)",
         _a_file, INFO, r"u\.data is a file, not a folder"),
    Case("file-for-folder-format", "file where a folder is expected", "`--format melu` given a file",
         _a_file, INFO + ("--format", "melu"), r"u\.data is a file, not a folder"),
    Case("folder-for-file", "folder where a file is expected", "ML-100K whose `u.user` is a folder",
         _folder_as(ML100K, "u.user"), INFO, r"u\.user is a folder, not a file"),
    Case("folder-for-inter", "folder where a file is expected", "RecBole folder whose `tiny.inter` is a folder",
         _folder_as(RECBOLE, "tiny.inter"), INFO + ("--format", "recbole"), r"tiny\.inter is a folder, not a file"),
    Case("folder-for-side", "folder where a file is expected", "RecBole folder whose `tiny.item` is a folder",
         _folder_as(RECBOLE, "tiny.item"), INFO, r"tiny\.item is a folder, not a file"),
    Case("folder-for-json", "folder where a file is expected", "MeLU whose `warm_state_y.json` is a folder",
         _folder_as(MELU, "warm_state_y.json"), INFO, r"warm_state_y\.json is a folder, not a file"),
    # -- JSON that does not parse ------------------------------------------------------------------------
    Case("melu-json-syntax", "JSON that does not parse", "MeLU `warm_state.json` with a missing comma on line 2",
         _melu_states(warm_state=('{"1": ["1", "2"],\n "2": ["2" "1"]}', None)), INFO,
         r"warm_state\.json, line 2, column 12: not valid JSON \(Expecting ',' delimiter\)"),
    Case("melu-json-type", "JSON of the wrong shape", "MeLU `warm_state_y.json` is a list",
         _melu_states(warm_state=(None, "[[5, 3], [4, 2]]")), INFO,
         r"warm_state_y\.json: expected a JSON object \{\"user_id\": \[ratings, \.\.\.\]\}, got list"),
    Case("melu-json-value", "JSON of the wrong shape", "MeLU `warm_state.json`: a movie id `\"one\"`",
         _melu_states(warm_state=({"1": ["one", "2"], "2": ["2", "1"]}, None)), INFO,
         r"warm_state\.json, user '1', entry 1, field 'movie_id': 'one' is not a number"),
    # -- ids absent from feature tables ------------------------------------------------------------------
    Case("ml100k-unknown-item", "id absent from a feature table", "ML-100K `u.data` rates item 99",
         _edit(ML100K, "u.data", _replace_line(2, "1\t99\t4\t1")), INFO,
         r"u\.data: 1 rating\(s\) name item ids that u\.item lacks \(e\.g\. line 2: user 1 item 99.*"
         r"data\.bad_rows=drop"),
    Case("ml1m-unknown-user", "id absent from a feature table", "ML-1M `ratings.dat` has user 77",
         _edit(ML1M, "ratings.dat", _append("77::1::3::978300000\n")), INFO,
         r"ratings\.dat: 1 rating\(s\) name user ids that users\.dat lacks"),
    Case("melu-unknown-movie", "id absent from a feature table", "MeLU `item_cold_state.json` lists movie 42",
         _melu_states(item_cold_state=({"1": ["42"], "2": ["4", "3"]}, None)), INFO,
         r"item_cold_state\.json: 1 rating\(s\) name item ids that movies_extrainfos\.dat lacks"),
    Case("recbole-unknown-item", "id absent from a feature table", "RecBole `tiny.inter` rates item m9",
         _edit(RECBOLE, "tiny.inter", _append("u1\tm9\t3\t5\n")), INFO,
         r"tiny\.inter: 1 rating\(s\) name item ids that tiny\.item lacks"),
    Case("lastfm-unknown-artist", "id absent from a feature table", "Last.fm plays of artist 99",
         _edit(LASTFM, plays=["2\t10\t500", "2\t99\t3"]), INFO,
         r"user_artists\.dat: 1 play count\(s\) name artist ids that artists\.dat lacks"),
    Case("ml100k-duplicate-user", "id repeated in a feature table", "ML-100K `u.user` lists user 2 twice",
         _edit(ML100K, "u.user", _append("2|30|M|other|11111\n")), INFO,
         r"u\.user, line 5, field 'user_id': id 2 already appears on line 2"),
    # -- ratings out of scale ----------------------------------------------------------------------------
    Case("ml100k-rating-6", "rating out of scale", "ML-100K `u.data` rating 6",
         _edit(ML100K, "u.data", _replace_line(4, "1\t4\t6\t1")), INFO,
         r"u\.data: 1 rating\(s\) outside the scale 1\.\.5 \(e\.g\. line 4: user 1 item 4 rating 6\)"),
    Case("ml1m-rating-0", "rating out of scale", "ML-1M `ratings.dat` rating 0",
         _edit(ML1M, "ratings.dat", _replace_line(1, "1::1::0::978300011")), INFO,
         r"ratings\.dat: 1 rating\(s\) outside the scale 1\.\.5"),
    Case("ml1m-rating-nan", "rating out of scale", "ML-1M `ratings.dat` rating `nan`",
         _edit(ML1M, "ratings.dat", _replace_line(1, "1::1::nan::978300011")), INFO,
         r"ratings\.dat: 1 rating\(s\) outside the scale 1\.\.5 .*rating nan"),
    Case("melu-rating-7", "rating out of scale", "MeLU `warm_state_y.json` rating 7",
         _melu_states(warm_state=(None, {"1": [7, 3], "2": [4, 2]})), INFO,
         r"warm_state\.json: 1 rating\(s\) outside the scale 1\.\.5"),
    Case("csv-half-star", "rating out of scale", "ML-25M `ratings.csv` rating 0.2",
         _ratings_csv(CSV_HEAD + CSV_ROWS.replace("1,1,3.0", "1,1,0.2")), INFO,
         r"ratings\.csv: 1 rating\(s\) outside the scale 0\.5\.\.5 \(e\.g\. line 2: user 1 item 1 rating 0\.2\)"),
    Case("recbole-scale", "rating out of scale", "RecBole rating 9 with `--set rating_scale=1,5`",
         _edit(RECBOLE, "tiny.inter", _append("u1\tm1\t9\t7\n")), INFO + ("--set", "rating_scale=1,5"),
         r"tiny\.inter: 1 rating\(s\) outside the scale 1\.\.5"),
    Case("recbole-header-type", "malformed header", "RecBole `tiny.inter` header field `item_id:tok`",
         _edit(RECBOLE, "tiny.inter", lambda t: t.replace("item_id:token", "item_id:tok")), INFO,
         r"tiny\.inter, line 1, field 'item_id:tok': expected NAME:TYPE with TYPE one of token, token_seq"),
    Case("csv-text-id", "id not a number", "ML-25M `ratings.csv` user id `u1` on line 3",
         _ratings_csv(CSV_HEAD + CSV_ROWS.replace("1,2,4.0", "u1,2,4.0")), INFO,
         r"ratings\.csv, line 3, field 'userId': 'u1' is not an integer"),
    Case("ml100k-rating-text", "rating not a number", "ML-100K `u.data` rating `five`",
         _edit(ML100K, "u.data", _replace_line(2, "1\t2\tfive\t1")), INFO,
         r"u\.data, line 2, field 'rating': 'five' is not a number"),
    # -- negative play counts ----------------------------------------------------------------------------
    Case("lastfm-negative", "negative play count", "Last.fm `user_artists.dat` weight -5",
         _edit(LASTFM, plays=["2\t10\t500", "2\t20\t-5"]), INFO,
         r"user_artists\.dat: 1 play count\(s\) below 1 \(e\.g\. line 3: user 2 artist 20 plays -5\)"),
    Case("lastfm-zero", "negative play count", "Last.fm `user_artists.dat` weight 0",
         _edit(LASTFM, plays=["2\t10\t500", "2\t20\t0"]), INFO,
         r"user_artists\.dat: 1 play count\(s\) below 1"),
    Case("lastfm-fraction", "play count not a whole number", "Last.fm `user_artists.dat` weight 2.5",
         _edit(LASTFM, plays=["2\t10\t500", "2\t20\t2.5"]), INFO,
         r"user_artists\.dat, line 3, field 'weight': '2\.5' is not an integer"),
    # -- empty user lists --------------------------------------------------------------------------------
    Case("melu-empty-list", "empty user list", "MeLU `warm_state.json`: user 2 has `[]` (and `[]` in `_y`)",
         _melu_states(warm_state=({"1": ["1", "2"], "2": []}, {"1": [5, 3], "2": []})), INFO,
         r"warm_state\.json: user '2' has no movies"),
    Case("melu-lengths", "user lists of different lengths", "MeLU `warm_state_y.json`: 1 rating for 2 movies",
         _melu_states(warm_state=(None, {"1": [5], "2": [4, 2]})), INFO,
         r"warm_state_y\.json: user '1' has 1 ratings but warm_state\.json lists 2 movies"),
    Case("melu-users-differ", "user lists of different users", "MeLU `user_cold_state_y.json` lacks user 4",
         _melu_states(user_cold_state=(None, {"3": [1]})), INFO,
         r"user_cold_state_y\.json: user '4' \(listed in user_cold_state\.json\) is missing"),
    # -- data options --------------------------------------------------------------------------------------
    Case("info-bad-rows", "data option out of range", "`--set bad_rows=skip`", _edit(ML100K), INFO + (
        "--set", "bad_rows=skip"), r"data\.bad_rows must be one of \('error', 'drop'\), got 'skip'"),
    Case("info-duplicates", "data option out of range", "`--set duplicates=newest`", _edit(ML100K), INFO + (
        "--set", "duplicates=newest"), r"data\.duplicates must be one of"),
    Case("info-unknown-key", "unknown key", "`--set min_rating=1`", _edit(ML100K),
         INFO + ("--set", "min_rating=1"), r"unknown key 'data\.min_rating'; did you mean 'data\.min_ratings'\?"),
    Case("info-type", "value of the wrong type", "`--set min_ratings=few`", _edit(ML100K),
         INFO + ("--set", "min_ratings=few"), r"--set data\.min_ratings=few: expected an integer"),
    Case("run-bad-data", "bad data through `metarec run`", "`metarec run` on ML-100K whose `u.data` uses commas",
         _edit(ML100K, "u.data", lambda t: t.replace("\t", ",")),
         ("run", "experiments/quickstart.py", "--set", "data.name=movielens", "--set", "data.path={path}",
          "--set", "data.protocol=temporal", "--workdir", "{scratch}/run", "--no-progress"),
         r"u\.data, line 1: expected 4 fields separated by '\\t', found 1.*separated by ','"),
    # -- config ------------------------------------------------------------------------------------------
    Case("config-int", "config: value of the wrong type", "`--set train.steps=abc`", GOOD_EXPERIMENT,
         _config("train.steps=abc"), r"--set train\.steps=abc: expected an integer \(the default is 1000\)"),
    Case("config-float", "config: value of the wrong type", "`--set optimizer.lr=fast`", GOOD_EXPERIMENT,
         _config("optimizer.lr=fast"), r"--set optimizer\.lr=fast: expected a number"),
    Case("config-bool", "config: value of the wrong type", "`--set model.item_id=maybe`", GOOD_EXPERIMENT,
         _config("model.item_id=maybe"), r"--set model\.item_id=maybe: expected true or false"),
    Case("config-tuple", "config: value of the wrong type", "`--set model.head_hidden=64,x`", GOOD_EXPERIMENT,
         _config("model.head_hidden=64,x"), r"--set model\.head_hidden=(64,)?x: expected an integer"),
    Case("config-no-equals", "config: malformed --set", "`--set train.steps`", GOOD_EXPERIMENT,
         _config("train.steps"), r"--set 'train\.steps': expected KEY=VALUE"),
    Case("config-lr", "config: value out of range", "`--set optimizer.lr=-1`", GOOD_EXPERIMENT,
         _config("optimizer.lr=-1"), r"optimizer\.lr must be > 0 and finite, got -1"),
    Case("config-query-size", "config: value out of range", "`--set data.query_size=0`", GOOD_EXPERIMENT,
         _config("data.query_size=0"), r"data\.query_size must be >= 1, got 0"),
    Case("config-steps", "config: value out of range", "`--set train.steps=-5`", GOOD_EXPERIMENT,
         _config("train.steps=-5"), r"train\.steps must be >= 0"),
    Case("config-seeds", "config: value out of range", "`--set num_seeds=0`", GOOD_EXPERIMENT,
         _config("num_seeds=0"), r"num_seeds must be >= 1, got 0"),
    Case("config-share", "config: value out of range", "`--set eval.scenario_valid_share=1.5`", GOOD_EXPERIMENT,
         _config("eval.scenario_valid_share=1.5"), r"eval\.scenario_valid_share must lie in \(0, 1\), got 1\.5"),
    Case("config-feedback", "config: value out of range", "`--set data.feedback=clicks`", GOOD_EXPERIMENT,
         _config("data.feedback=clicks"), r"data\.feedback must be one of \('rating', 'implicit'\), got 'clicks'"),
    Case("config-lr-nan", "config: value out of range", "`--set optimizer.lr=nan`", GOOD_EXPERIMENT,
         _config("optimizer.lr=nan"), r"optimizer\.lr must be > 0"),
    Case("config-embed-dim", "config: value out of range", "`--set model.embed_dim=0`", GOOD_EXPERIMENT,
         _config("model.embed_dim=0"), r"model\.embed_dim must be >= 1, got 0"),
    Case("config-hidden", "config: value out of range", "`--set model.head_hidden=0`", GOOD_EXPERIMENT,
         _config("model.head_hidden=0"), r"model\.head_hidden.*>= 1"),
    Case("config-valid-share", "config: value out of range", "`--set data.valid_share=1.5`", GOOD_EXPERIMENT,
         _config("data.valid_share=1.5"), r"data\.valid_share must lie in \[0, 1\), got 1\.5"),
    Case("config-optimizer", "config: value out of range", "`--set optimizer.name=adamx`", GOOD_EXPERIMENT,
         _config("optimizer.name=adamx"), r"optimizer\.name.*'adamx'"),
    Case("config-protocol", "config: value out of range", "`--set data.protocol=temporl`", GOOD_EXPERIMENT,
         _config("data.protocol=temporl"), r"data\.protocol.*'temporl'.*did you mean 'temporal'"),
    Case("config-data-name", "config: value out of range", "`--set data.name=movilens`", GOOD_EXPERIMENT,
         _config("data.name=movilens"), r"data\.name.*'movilens'.*did you mean 'movielens'"),
    Case("config-bad-rows", "config: value out of range", "`--set data.bad_rows=skip`", GOOD_EXPERIMENT,
         _config("data.bad_rows=skip"), r"data\.bad_rows: unknown value 'skip' \(known: error, drop\)"),
    Case("config-freeze", "config: value out of range", "`--set model.freeze=(` (not a regular expression)",
         GOOD_EXPERIMENT, _config("model.freeze=("), r"model\.freeze.*regular expression"),
    Case("run-protocol", "config: value out of range", "`metarec run` with `--set data.protocol=temporl`",
         GOOD_EXPERIMENT, ("run", "{path}", "--set", "data.protocol=temporl", "--set", "train.steps=1",
                           "--workdir", "{scratch}/run", "--no-progress"),
         r"data\.protocol: unknown value 'temporl' \(known: .*\); did you mean 'temporal'\?"),
    Case("config-unknown-key", "config: unknown key", "`--set optimizer.learning_rate=0.1`", GOOD_EXPERIMENT,
         _config("optimizer.learning_rate=0.1"), r"unknown key 'optimizer\.learning_rate'"),
    Case("config-unknown-key-typo", "config: unknown key", "`--set train.stpes=5`", GOOD_EXPERIMENT,
         _config("train.stpes=5"), r"unknown key 'train\.stpes'; did you mean 'train\.steps'\?"),
    Case("config-unknown-method", "config: unknown method", "`--set methods=mmal`", GOOD_EXPERIMENT,
         _config("methods=mmal"), r"unknown method 'mmal'; did you mean .*'maml'"),
    Case("config-unused-key", "config: key no method uses", "`--set meta.inner_lr=0.5` with only global_mean",
         GOOD_EXPERIMENT, _config("methods=global_mean", "meta.inner_lr=0.5"),
         r"--set meta\.inner_lr: no method of this run uses it"),
    Case("experiment-missing", "experiment file", "a file that does not exist",
         lambda folder: folder / "exp" / "nope.py", ("config", "{path}"), r"experiment file .*nope\.py does not exist"),
    Case("experiment-folder", "experiment file", "a folder instead of a file",
         lambda folder: (folder / "exp").mkdir() or folder / "exp", ("config", "{path}"),
         r"experiment file .*exp is a folder, not a file"),
    Case("experiment-raises", "experiment file", "a file that raises on import",
         _experiment("raise RuntimeError('no GPU here')\n"), ("config", "{path}"),
         r"experiment file .*bad_experiment\.py failed to import: RuntimeError: no GPU here"),
    Case("experiment-syntax", "experiment file", "a file with a syntax error",
         _experiment("def get_config(:\n  pass\n"), ("config", "{path}"),
         r"experiment file .*bad_experiment\.py failed to import: SyntaxError: .*line 1"),
    Case("experiment-no-get-config", "experiment file", "a file without get_config()",
         _experiment("x = 1\n"), ("config", "{path}"),
         r"experiment file .*bad_experiment\.py has no get_config\(\) function"),
    Case("experiment-get-config-raises", "experiment file", "get_config() raises",
         _experiment("def get_config():\n  raise KeyError('missing setting')\n"), ("config", "{path}"),
         r"bad_experiment\.py: get_config\(\) raised KeyError: 'missing setting'"),
    Case("experiment-get-config-type", "experiment file", "get_config() returns a dict",
         _experiment("def get_config():\n  return {'name': 'x'}\n"), ("config", "{path}"),
         r"get_config\(\) must return an ml_collections\.ConfigDict, got dict"),
]


def files_of(folder: pathlib.Path) -> dict[str, tuple[int, str]]:
  """Every file under ``folder`` (but Python's bytecode caches) -> (size, sha256)."""
  out = {}
  for p in sorted(folder.rglob("*")):
    if p.is_file() and "__pycache__" not in p.parts:
      out[str(p.relative_to(folder))] = (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
  return out


def argv_of(case: Case, path: pathlib.Path, scratch: pathlib.Path) -> list[str]:
  """The case's command with its paths filled in."""
  return [a.replace("{path}", str(path)).replace("{scratch}", str(scratch)) for a in case.argv]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_bad_input_is_one_line(case, tmp_path, capsys):
  folder = tmp_path / "in"
  folder.mkdir()
  path = case.make(folder)
  before = files_of(folder)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", DataWarning)
    rc = main(argv_of(case, path, tmp_path / "scratch"))
  err = capsys.readouterr().err
  assert "Traceback" not in err
  lines = err.strip("\n").split("\n")
  assert rc == 2, err
  assert len(lines) == 1, err
  assert lines[0].startswith("metarec: error: "), err
  assert re.search(case.pattern, lines[0]), f"{lines[0]!r} does not match {case.pattern!r}"
  assert files_of(folder) == before


# -- the shipped data sets: read each with the library loaders; no file of its folder may change -----------

SHIPPED = [
    ("ml-100k", "movielens"),
    ("ml-100k/recbole_atomic", "recbole"),
    ("melu-ml1m", "melu"),
    ("lastfm-hetrec2011-2k", "lastfm"),
]


def test_reading_shipped_data_writes_nothing():
  root = os.environ.get("METAREC_DATA")
  if not root:
    pytest.skip("METAREC_DATA is unset: no shipped data sets to read (set it to the folder holding ml-100k, "
                "melu-ml1m, lastfm-hetrec2011-2k)")
  from metarec_jax.data.lastfm import load_lastfm
  from metarec_jax.data.melu import load_melu
  from metarec_jax.data.movielens import load_movielens
  from metarec_jax.data.recbole import load_recbole
  loaders = {"movielens": load_movielens, "recbole": load_recbole, "melu": load_melu, "lastfm": load_lastfm}
  found = [(pathlib.Path(root) / name, fmt) for name, fmt in SHIPPED if (pathlib.Path(root) / name).is_dir()]
  if not found:
    pytest.skip(f"METAREC_DATA={root} holds none of {[n for n, _ in SHIPPED]}")
  top = {d.parts[len(pathlib.Path(root).parts)] for d, _ in found}
  before = {t: files_of(pathlib.Path(root) / t) for t in sorted(top)}
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", DataWarning)
    for d, fmt in found:
      data = loaders[fmt](d)
      assert len(data.interactions) > 0, d
  after = {t: files_of(pathlib.Path(root) / t) for t in sorted(top)}
  assert after == before
