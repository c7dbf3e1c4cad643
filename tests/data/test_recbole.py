"""RecBole atomic files: typed headers, field kinds, bad input, and the real ml-100k copy."""

from __future__ import annotations

import numpy as np
import pytest

from metarec_jax.data import recbole
from metarec_jax.data.parsing import DataError, DataWarning, MissingDataFile
from tests.conftest import data_dir
from tests.data.tiny_files import listing, write_recbole

pytestmark = pytest.mark.filterwarnings("ignore::metarec_jax.data.parsing.DataWarning")


def test_fields_by_type(tmp_path):
  data = recbole.load_recbole(write_recbole(tmp_path / "rb"))
  assert data.name == "tiny"
  assert (data.num_users, data.num_items, len(data.interactions)) == (4, 4, 16)
  kinds = {s.name: (s.kind, s.width) for s in data.users.specs + data.items.specs}
  assert kinds == {"age": ("categorical", 1), "gender": ("categorical", 1), "height": ("dense", 1),
                   "movie_title": ("multi", 2), "release_year": ("categorical", 1), "class": ("multi", 2),
                   "vec": ("dense", 3)}
  u = data.users.columns
  assert u["age"].tolist() == [1, 3, 1, 2]  # vocabulary sorted: 24, 30, 53
  height = u["height"][:, 0]
  assert height[1] == 0.0  # missing: the mean after standardising
  assert abs(height.mean()) < 1e-6 and height[0] > height[3] > height[2]
  cls = data.items.columns["class"]
  assert (cls[3] == 0).all()  # empty token_seq: no value
  assert sorted(cls[2][cls[2] > 0].tolist()) == [1, 4]  # Action, Horror of (Action, Animation, Comedy, Horror)
  assert data.item_year.tolist() == [1995, 1995, 1998, 1999]
  assert data.interactions.timestamp is not None
  assert data.rating_scale == (1.0, 5.0)  # observed
  assert data.user_raw_ids.tolist() == ["u1", "u2", "u3", "u4"]


def test_field_selection(tmp_path):
  d = write_recbole(tmp_path / "rb")
  data = recbole.load_recbole(d, user_fields=("gender",), item_fields=("class", "release_year"))
  assert [s.name for s in data.users.specs] == ["gender"]
  assert [s.name for s in data.items.specs] == ["release_year", "class"]  # file order
  with pytest.raises(DataError, match=r"tiny\.user: no field\(s\) \['job'\]"):
    recbole.load_recbole(d, user_fields=("job",))


def test_missing_side_file_gives_a_constant_field(tmp_path):
  d = write_recbole(tmp_path / "rb", user="")
  with pytest.warns(DataWarning, match=r"tiny\.user not found: users have no features"):
    data = recbole.load_recbole(d)
  assert [s.name for s in data.users.specs] == ["user_constant"]
  assert data.num_users == 4 and data.users.columns["user_constant"].tolist() == [1, 1, 1, 1]


def test_bad_header_and_missing_fields(tmp_path):
  d = write_recbole(tmp_path / "a", inter="user_id:token\titem_id:tok\trating:float\nu1\tm1\t3\n")
  with pytest.raises(DataError, match=r"tiny\.inter, line 1, field 'item_id:tok': expected NAME:TYPE"):
    recbole.load_recbole(d)
  d = write_recbole(tmp_path / "b", inter="user_id:token\titem_id:token\nu1\tm1\n")
  with pytest.raises(DataError, match=r"no rating field"):
    recbole.load_recbole(d)
  d = write_recbole(tmp_path / "c", inter="user_id:token\titem_id:token\trating:float\nu1\tm1\tgood\n")
  with pytest.raises(DataError, match=r"tiny\.inter, line 2, field 'rating': 'good' is not a number"):
    recbole.load_recbole(d)
  d = write_recbole(tmp_path / "e", inter="user_id:token,item_id:token,rating:float\nu1,m1,3\n")
  with pytest.raises(DataError, match=r"tiny\.inter, line 1: RecBole atomic files are tab-separated, but this "
                     r"header is separated by commas"):
    recbole.load_recbole(d)
  d = write_recbole(tmp_path / "d", inter="user_id:token\titem_id:token\trating:float\nu1\tm1\n")
  with pytest.raises(DataError, match=r"tiny\.inter, line 2: expected 3 fields .* field 'rating' is missing"):
    recbole.load_recbole(d)


def test_name_from_files(tmp_path):
  with pytest.raises(MissingDataFile, match="no RecBole .inter file"):
    recbole.load_recbole(tmp_path)
  write_recbole(tmp_path / "two", name="a")
  write_recbole(tmp_path / "two", name="b")
  with pytest.raises(DataError, match=r"several RecBole \.inter files .*a\.inter, b\.inter"):
    recbole.load_recbole(tmp_path / "two")


def test_scale_unknown_ids_and_duplicates(tmp_path):
  inter = ("user_id:token\titem_id:token\trating:float\n"
           "u1\tm1\t3\nu1\tm1\t4\nu2\tm9\t2\nu3\tm2\t11\n")
  d = write_recbole(tmp_path / "rb", inter=inter)
  with pytest.raises(DataError, match=r"name item ids that tiny\.item lacks \(e\.g\. line 4: user u2 item m9"):
    recbole.load_recbole(d)
  d2 = write_recbole(tmp_path / "rb2", inter=inter.replace("m9", "m3"))
  with pytest.raises(DataError, match=r"1 rating\(s\) outside the scale 1\.\.5 \(e\.g\. line 5: user u3"):
    recbole.load_recbole(d2, rating_scale=(1, 5))
  with pytest.warns(DataWarning, match=r"rated more than once"):
    data = recbole.load_recbole(d, bad_rows="drop", rating_scale=(1, 5))
  assert data.interactions.rating.tolist() == [4.0]


def test_nothing_written(tmp_path):
  d = write_recbole(tmp_path / "rb")
  before = listing(d)
  recbole.load_recbole(d)
  assert listing(d) == before


def test_real_ml100k_atomic_matches_raw():
  d = data_dir("ml-100k") / "recbole_atomic"
  data = recbole.load_recbole(d)
  assert data.name == "ml-100k"
  assert (data.num_users, data.num_items, len(data.interactions)) == (943, 1682, 100000)
  from metarec_jax.data.movielens import load_movielens
  raw = load_movielens(data_dir("ml-100k"))
  # Same ratings (ids map through the raw ids).
  a = sorted(zip(data.user_raw_ids[data.interactions.user].astype(int).tolist(),
                 data.item_raw_ids[data.interactions.item].astype(int).tolist(),
                 data.interactions.rating.tolist()))
  b = sorted(zip(raw.user_raw_ids[raw.interactions.user].tolist(), raw.item_raw_ids[raw.interactions.item].tolist(),
                 raw.interactions.rating.tolist()))
  assert a == b
  assert np.array_equal(np.sort(data.interactions.timestamp), np.sort(raw.interactions.timestamp))
