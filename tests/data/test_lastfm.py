"""The Last.fm HetRec reader (play counts, friends) and its implicit positives."""

from __future__ import annotations

import numpy as np
import pytest

from metarec_jax.data import DataError
from metarec_jax.data.implicit import to_implicit
from metarec_jax.data.lastfm import load_lastfm
from tests.conftest import data_dir


def write_lastfm(d, plays=None):
  d.mkdir(parents=True, exist_ok=True)
  (d / "artists.dat").write_text("id\tname\turl\tpictureURL\n10\tA\tu\tp\n20\tB\tu\tp\n30\tC\tu\tp\n")
  plays = plays or ["2\t10\t500", "2\t20\t3", "7\t20\t40", "7\t30\t1"]
  (d / "user_artists.dat").write_text("userID\tartistID\tweight\n" + "\n".join(plays) + "\n")
  (d / "user_friends.dat").write_text("userID\tfriendID\n2\t7\n7\t2\n7\t9\n9\t7\n")
  return d


def test_reads_plays_and_friends(tmp_path):
  data = load_lastfm(write_lastfm(tmp_path / "fm"))
  assert data.num_users == 3 and data.num_items == 3       # users 2, 7, 9 (9 only has friends)
  np.testing.assert_array_equal(data.user_raw_ids, [2, 7, 9])
  np.testing.assert_array_equal(data.interactions.rating, [500, 3, 40, 1])
  friends = data.users.columns["friends"]
  assert friends.shape == (3, 2)
  assert sorted(friends[1][friends[1] > 0] - 1) == [0, 2]  # user 7's friends: rows of users 2 and 9
  imp = to_implicit(data, 10)
  np.testing.assert_array_equal(imp.interactions.item, [0, 1])   # (2, 10, 500) and (7, 20, 40)
  assert (imp.interactions.rating == 1).all() and imp.feedback == "implicit"
  assert len(imp.interacted) == 4 and imp.rating_scale == (0.0, 1.0)
  with pytest.raises(ValueError, match="positive_threshold=1000"):
    to_implicit(data, 1000)


def test_bad_lines_name_file_line_and_field(tmp_path):
  with pytest.raises(DataError, match=r"user_artists.dat, line 3, field 'weight'"):
    load_lastfm(write_lastfm(tmp_path / "a", ["2\t10\t500", "2\t20\tlots"]))
  with pytest.raises(DataError, match="artists.dat lacks"):
    load_lastfm(write_lastfm(tmp_path / "b", ["2\t99\t5"]))


def test_real_lastfm_counts():
  data = load_lastfm(data_dir("lastfm-hetrec2011-2k"))
  assert (data.num_users, data.num_items, len(data.interactions)) == (1892, 17632, 92834)
  assert data.users.columns["friends"].astype(bool).sum() == 25434
