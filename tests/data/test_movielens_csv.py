"""MovieLens ``ratings.csv`` releases (ML-20M / ML-25M format): the fast reader and the writer."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from metarec_jax.data import movielens
from metarec_jax.data.parsing import DataError, DataWarning, read_numeric_csv

MOVIES = ('movieId,title,genres\n'
          '5,Toy Story (1995),Adventure|Animation\n'
          '17,"American President, The (1995)",(no genres listed)\n'
          '20,Untitled,Comedy\n')


def _write(tmp_path, user, item, rating, ts, movies=True, name="ml-25m"):
  d = tmp_path / name
  d.mkdir()
  movielens.write_ratings_csv(d / "ratings.csv", np.array(user), np.array(item), np.array(rating), np.array(ts))
  if movies:
    (d / "movies.csv").write_text(MOVIES)
  return d


def test_writer_writes_ml25m_text(tmp_path):
  d = _write(tmp_path, [1, 1, 10], [5, 17, 5], [3.5, 0.5, 5.0], [964982703, 0, 12])
  assert (d / "ratings.csv").read_text() == ("userId,movieId,rating,timestamp\n1,5,3.5,964982703\n"
                                             "1,17,0.5,0\n10,5,5.0,12\n")


def test_reads_ratings_and_movies(tmp_path):
  d = _write(tmp_path, [1, 1, 10], [5, 17, 5], [3.5, 0.5, 5.0], [964982703, 0, 12])
  data = movielens.load_movielens(d)
  assert movielens.variant(d) == "ml-csv" and data.name == "ml-25m"
  assert (data.num_users, data.num_items) == (2, 3)
  assert data.user_raw_ids.tolist() == [1, 10] and data.item_raw_ids.tolist() == [5, 17, 20]
  inter = data.interactions
  assert inter.user.tolist() == [0, 0, 1] and inter.item.tolist() == [0, 1, 0]
  assert inter.rating.tolist() == [3.5, 0.5, 5.0] and inter.timestamp.tolist() == [964982703, 0, 12]
  assert data.rating_scale == (0.5, 5.0)
  assert data.items.columns["genre"].tolist() == [[1, 2], [0, 0], [3, 0]]  # "(no genres listed)" -> none
  assert data.item_year.tolist() == [1995, 1995, 0]
  assert [s.name for s in data.users.specs] == ["user_constant"]


def test_without_movies_items_are_the_rated_ids(tmp_path):
  data = movielens.load_movielens(_write(tmp_path, [3, 2], [40, 7], [1.0, 2.5], [1, 2], movies=False, name="x"))
  assert data.name == "ml-csv" and data.item_raw_ids.tolist() == [7, 40] and data.interactions.item.tolist() == [1, 0]


def test_duplicates_and_bad_rows_go_through_the_checks(tmp_path):
  d = _write(tmp_path, [1, 1, 1], [5, 17, 5], [3.5, 0.5, 2.0], [9, 0, 10])
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", DataWarning)
    data = movielens.load_movielens(d)
  assert len(data.interactions) == 2 and any("rated more than once" in str(w.message) for w in caught)
  with pytest.raises(DataError, match="line 2: user 1 item 5"):
    movielens.load_movielens(d, duplicates="error")
  (d / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,5,3.5,9\n1,99,4.0,3\n")
  with pytest.raises(DataError, match="item ids that movies.csv lacks"):
    movielens.load_movielens(d)


def test_numeric_reader_blocks_fallback_and_errors(tmp_path):
  rng = np.random.default_rng(0)
  n = 500
  path = movielens.write_ratings_csv(tmp_path / "r.csv", rng.integers(1, 10**6, n), rng.integers(1, 10**5, n),
                                     rng.integers(1, 11, n) / 2, rng.integers(0, 2**31, n))
  names, ints = movielens.CSV_HEADER, ("userId", "movieId", "timestamp")
  whole = read_numeric_csv(path, names, integers=ints)
  tiny = read_numeric_csv(path, names, integers=ints, chunk_bytes=37)  # blocks cut mid-line
  for k in names:
    np.testing.assert_array_equal(whole.columns[k], tiny.columns[k])
  assert whole.columns["userId"].dtype == np.int64 and whole.line_numbers([0, 4]).tolist() == [2, 6]
  # A blank line is accepted through the slow path, with true line numbers.
  path.write_text("userId,movieId,rating,timestamp\n1,2,3.5,4\n\n5,6,1.0,8\n")
  t = read_numeric_csv(path, names, integers=ints)
  assert t.columns["movieId"].tolist() == [2, 6] and t.line_numbers([1]).tolist() == [4]
  for body, match in (("1,2,x,4\n", "line 2, field 'rating': 'x' is not a number"),
                      ("1.5,2,3,4\n", "line 2, field 'userId': '1.5' is not an integer"),
                      ("1,2,3\n", "line 2: expected 4 fields")):
    path.write_text("userId,movieId,rating,timestamp\n" + body)
    with pytest.raises(DataError, match=match):
      read_numeric_csv(path, names, integers=ints)
  path.write_text("user,movie,rating,timestamp\n1,2,3,4\n")
  with pytest.raises(DataError, match="expected 'userId,movieId,rating,timestamp'"):
    read_numeric_csv(path, names, integers=ints)


def test_numeric_reader_output_types(tmp_path):
  path = tmp_path / "r.csv"
  path.write_text("userId,movieId,rating,timestamp\n1,2,3.5,4\n")
  names = movielens.CSV_HEADER
  t = read_numeric_csv(path, names, integers=("userId",), dtypes={"userId": np.int32, "rating": np.float32})
  assert t.columns["userId"].dtype == np.int32 and t.columns["rating"].dtype == np.float32
  path.write_text("userId,movieId,rating,timestamp\n1,2,3.5,4\n3000000000,2,3.5,4\n")
  with pytest.raises(DataError, match="line 3, field 'userId': 3000000000 does not fit int32"):
    read_numeric_csv(path, names, integers=("userId",), dtypes={"userId": np.int32})
