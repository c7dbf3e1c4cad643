"""MovieLens 100K / 1M readers: tiny files written here, bad input, and the real copies."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from metarec_jax.data import movielens
from metarec_jax.data.parsing import DataError, DataWarning, MissingDataFile, read_table
from tests.conftest import data_dir
from tests.data.tiny_files import listing, write_ml1m, write_ml100k

pytestmark = pytest.mark.filterwarnings("ignore::metarec_jax.data.parsing.DataWarning")


def test_ml100k_tables_and_ratings(tmp_path):
  d = write_ml100k(tmp_path / "ml")
  data = movielens.load_movielens(d)
  assert data.name == "ml-100k"
  assert (data.num_users, data.num_items, len(data.interactions)) == (4, 5, 20)
  assert [s.name for s in data.users.specs] == ["gender", "age", "occupation", "zip"]
  assert [s.name for s in data.items.specs] == ["genre", "year"]
  # Ages grouped as ML-1M: 24 -> "18", 53 -> "50", 17 -> "1", 60 -> "56".
  labels = np.asarray(movielens.AGE_GROUPS)[data.users.columns["age"] - 1]
  assert labels.tolist() == ["18", "50", "1", "56"]
  # Occupation ids follow u.occupation; zip keeps 5 characters.
  assert data.users.columns["occupation"].tolist() == [1, 3, 2, 1]
  assert data.users.specs[3].vocab_size == 5  # 4 distinct zips + unknown
  # Genre "unknown" is no genre; ids follow u.genre without it.
  genre = data.items.columns["genre"]
  assert genre.shape == (5, 2)
  assert genre.tolist() == [[2, 0], [1, 0], [3, 0], [1, 3], [0, 0]]
  assert data.item_year.tolist() == [1995, 1995, 1995, 1997, 0]
  assert data.items.columns["year"][4] == 0  # unknown year
  assert data.interactions.timestamp is not None
  assert data.rating_scale == (1.0, 5.0)
  # Ids are rows: user 1 -> row 0, item 5 -> row 4.
  inter = data.interactions
  assert inter.user.min() == 0 and inter.user.max() == 3 and inter.item.max() == 4
  assert data.user_raw_ids.tolist() == [1, 2, 3, 4]
  assert data.split_options["new_item_year"] == 1997


def test_ml1m_tables(tmp_path):
  data = movielens.load_movielens(write_ml1m(tmp_path / "ml"))
  assert data.name == "ml-1m"
  assert (data.num_users, data.num_items, len(data.interactions)) == (3, 4, 12)
  assert data.item_year.tolist() == [1995, 1995, 1993, 1999]
  genre = data.items.columns["genre"]
  assert genre.shape == (4, 3)
  assert (genre[2] > 0).sum() == 1 and (genre[0] > 0).sum() == 3
  assert data.users.columns["age"].tolist() == [1, 7, 3]
  assert data.split_options["new_item_year"] == 1998


def test_missing_file_names_file_and_download_command(tmp_path):
  d = write_ml100k(tmp_path / "ml")
  (d / "u.item").unlink()
  with pytest.raises(MissingDataFile, match=r"u\.item.*metarec data download ml-100k --to"):
    movielens.load_movielens(d)
  with pytest.raises(MissingDataFile, match=r"metarec data download ml-1m"):
    movielens.load_movielens(tmp_path / "empty_or_absent")


def test_malformed_line_names_file_line_and_field(tmp_path):
  d = write_ml100k(tmp_path / "ml")
  lines = (d / "u.data").read_text().splitlines()
  lines[6] = "2\t2\t3"  # line 7 lacks its timestamp
  (d / "u.data").write_text("\n".join(lines) + "\n")
  with pytest.raises(DataError, match=r"u\.data, line 7: .*field 'timestamp' is missing"):
    movielens.load_movielens(d)
  lines[6] = "2\tx2\t3\t5"
  (d / "u.data").write_text("\n".join(lines) + "\n")
  with pytest.raises(DataError, match=r"u\.data, line 7, field 'item_id': 'x2' is not an integer"):
    movielens.load_movielens(d)


def test_ml1m_malformed_line(tmp_path):
  d = write_ml1m(tmp_path / "ml")
  (d / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16\n")
  with pytest.raises(DataError, match=r"users\.dat, line 2: .*field 'zip' is missing"):
    movielens.load_movielens(d)


def test_out_of_scale_ratings_error_or_drop(tmp_path):
  rows = [(1, 1, 5, 1), (1, 2, 7, 2), (2, 1, 0, 3), (2, 2, 4, 4)]
  d = write_ml100k(tmp_path / "ml", rows)
  with pytest.raises(DataError, match=r"2 rating\(s\) outside the scale 1\.\.5 .*line 2: user 1 item 2 "
                                      r"rating 7.*line 3: user 2 item 1 rating 0"):
    movielens.load_movielens(d)
  with pytest.warns(DataWarning, match="outside the scale"):
    data = movielens.load_movielens(d, bad_rows="drop")
  assert len(data.interactions) == 2
  assert any("dropped" in n for n in data.notes)


def test_unknown_ids_reported(tmp_path):
  rows = [(1, 1, 5, 1), (9, 2, 4, 2), (2, 99, 3, 3), (2, 98, 3, 4)]
  d = write_ml100k(tmp_path / "ml", rows)
  with pytest.raises(DataError, match=r"1 rating\(s\) name user ids that u\.user lacks \(e\.g\. line 2: user 9"):
    movielens.load_movielens(d)
  with pytest.warns(DataWarning) as caught:
    data = movielens.load_movielens(d, bad_rows="drop")
  text = " ".join(str(w.message) for w in caught)
  assert "2 rating(s) name item ids that u.item lacks" in text
  assert len(data.interactions) == 1


def test_duplicates_rules(tmp_path):
  rows = [(1, 1, 5, 30), (1, 1, 2, 10), (1, 2, 4, 1), (2, 1, 3, 5), (2, 1, 1, 5)]
  d = write_ml100k(tmp_path / "ml", rows)
  with pytest.warns(DataWarning, match=r"2 \(user, item\) pair\(s\) rated more than once \(2 extra"):
    last = movielens.load_movielens(d)
  got = {(int(u), int(i)): float(r) for u, i, r in zip(last.interactions.user, last.interactions.item,
                                                       last.interactions.rating)}
  # "last": latest timestamp wins (5 at t=30); equal timestamps: the later line (1).
  assert got == {(0, 0): 5.0, (0, 1): 4.0, (1, 0): 1.0}
  assert any("kept the latest" in n for n in last.notes)
  with pytest.warns(DataWarning):
    first = movielens.load_movielens(d, duplicates="first")
  assert sorted(first.interactions.rating.tolist()) == [2.0, 3.0, 4.0]
  with pytest.warns(DataWarning):
    mean = movielens.load_movielens(d, duplicates="mean")
  assert sorted(mean.interactions.rating.tolist()) == [2.0, 3.5, 4.0]
  with pytest.raises(DataError, match="rated more than once"):
    movielens.load_movielens(d, duplicates="error")


def test_nothing_written_into_data_dir(tmp_path):
  d = write_ml100k(tmp_path / "ml", [(1, 1, 5, 1), (1, 1, 4, 2), (1, 2, 9, 3)])
  before = listing(d)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", DataWarning)
    movielens.load_movielens(d, bad_rows="drop")
  assert listing(d) == before


def test_read_table_blank_lines_crlf_and_encoding(tmp_path):
  p = tmp_path / "t.dat"
  p.write_bytes(b"1::a\r\n\r\n2::b\xe9\r\n")
  t = read_table(p, "::", ("id", "name"), encoding="latin-1")
  assert t.ints("id").tolist() == [1, 2]
  assert t.strings("name").tolist() == ["a", "b\xe9"]
  assert t.lines.tolist() == [1, 3]
  with pytest.raises(DataError, match=r"t\.dat, line 3: bytes that are not valid utf-8"):
    read_table(p, "::", ("id", "name"), encoding="utf-8")


def test_real_ml100k():
  d = data_dir("ml-100k")
  before = listing(d)
  data = movielens.load_movielens(d)
  assert (data.num_users, data.num_items, len(data.interactions)) == (943, 1682, 100000)
  assert data.notes == ()
  counts = np.bincount(data.interactions.rating.astype(int), minlength=6)[1:]
  assert counts.tolist() == [6110, 11370, 27145, 34174, 21201]
  assert data.items.specs[0].vocab_size == 19  # 18 genres + padding ("unknown" is no genre)
  assert listing(d) == before
