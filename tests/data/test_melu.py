"""MeLU's ML-1M release: tiny files written here, bad input, and the real release."""

from __future__ import annotations

import json
import re
import warnings

import pytest

from metarec_jax.data import melu
from metarec_jax.data.info import dataset_info
from metarec_jax.data.parsing import DataError, DataWarning, MissingDataFile
from tests.conftest import data_dir
from tests.data.tiny_files import MELU_VOCAB, listing, write_melu

pytestmark = pytest.mark.filterwarnings("ignore::metarec_jax.data.parsing.DataWarning")

# The contract: tasks (users with 13..100 ratings) and ratings per scenario.
MELU_COUNTS = {
    "warm": {"tasks": 2653, "ratings": 121811},
    "user_cold": {"tasks": 668, "ratings": 30478},
    "item_cold": {"tasks": 2863, "ratings": 106814},
    "user_item_cold": {"tasks": 723, "ratings": 26790},
}


def _ids(vocab_name, values):
  return [MELU_VOCAB[vocab_name].index(v) + 1 for v in values]


def test_tiny_release(tmp_path):
  data = melu.load_melu(write_melu(tmp_path / "melu"))
  assert (data.num_users, data.num_items) == (4, 4)
  assert [s.name for s in data.users.specs] == ["gender", "age", "occupation", "zip"]
  assert [s.name for s in data.items.specs] == ["rate", "genre", "director", "actor", "writer", "year"]
  u = data.users.columns
  assert u["gender"].tolist() == _ids("gender", ["F", "M", "M", "F"])
  assert u["age"].tolist() == _ids("age", ["1", "56", "25", "35"])
  assert u["zip"].tolist() == _ids("zipcode", ["48067", "70072", "55117", "02460"])  # first 5 chars
  it = data.items.columns
  assert it["rate"].tolist() == _ids("rate", ["G", "PG-13", "UNRATED"]) + [0]  # N/A: unknown
  assert set(it["genre"][0]) - {0} == set(_ids("genre", ["Animation", "Comedy"]))
  assert set(it["genre"][3]) == {0}  # N/A: no genre
  # "(co-director)" is removed; "Lee Unkrich" is not in the vocabulary -> dropped (and reported).
  assert set(it["director"][2]) - {0} == set(_ids("director", ["Andrew Stanton"]))
  assert set(it["director"][3]) - {0} == set(_ids("director", ["nan"]))  # N/A is MeLU's "nan"
  assert set(it["actor"][2]) - {0} == set(_ids("actor", ["nan"]))
  assert data.items.specs[3].vocab_size == len(MELU_VOCAB["actor"]) + 1
  assert data.item_year.tolist() == [1995, 1995, 1998, 1999]
  assert any("Lee Unkrich" in n for n in data.notes)
  # Scenarios from the state files; cold flags from the cold ones.
  assert {s: len(r) for s, r in data.scenarios.items()} == {"warm": 4, "user_cold": 3, "item_cold": 3,
                                                             "user_item_cold": 1}
  assert data.user_is_cold.tolist() == [False, False, True, True]
  assert data.item_is_cold.tolist() == [False, False, True, True]
  assert len(data.interactions) == 11
  warm = data.scenarios["warm"]
  assert list(zip(warm.user.tolist(), warm.item.tolist(), warm.rating.tolist())) == [
      (0, 0, 5.0), (0, 1, 3.0), (1, 1, 4.0), (1, 0, 2.0)]
  assert data.interactions.timestamp is None


def test_missing_state_file_names_download(tmp_path):
  d = write_melu(tmp_path / "melu")
  (d / "item_cold_state_y.json").unlink()
  with pytest.raises(MissingDataFile, match=r"item_cold_state_y\.json.*metarec data download melu-ml1m --to"):
    melu.load_melu(d)


def test_malformed_extrainfos_line(tmp_path):
  d = write_melu(tmp_path / "melu")
  lines = (d / "movies_extrainfos.dat").read_text().splitlines()
  lines[2] = "::".join(lines[2].split("::")[:8])
  (d / "movies_extrainfos.dat").write_text("\n".join(lines) + "\n")
  with pytest.raises(DataError, match=r"movies_extrainfos\.dat, line 3: .*field 'actors' is missing"):
    melu.load_melu(d)


@pytest.mark.parametrize("x,y,pattern", [
    ('{"1": ["1", "2"]', '{"1": [5, 3]}', r"warm_state\.json, line 1, column \d+: not valid JSON"),
    ('{"1": ["1", "2"]}', '{"1": [5]}', r"warm_state_y\.json: user '1' has 1 ratings but warm_state\.json "
                                        r"lists 2"),
    ('{"1": ["1", "x"]}', '{"1": [5, 3]}', r"warm_state\.json, user '1', entry 2, field 'movie_id': 'x'"),
    ('{"1": ["1", "2"]}', '{"1": [5, "good"]}', r"warm_state_y\.json, user '1', entry 2, field 'rating'"),
    ('{"1": ["1"], "2": ["2"]}', '{"1": [5]}', r"warm_state_y\.json: user '2' .* is missing"),
])
def test_malformed_state_files(tmp_path, x, y, pattern):
  d = write_melu(tmp_path / "melu")
  (d / "warm_state.json").write_text(x)
  (d / "warm_state_y.json").write_text(y)
  with pytest.raises(DataError, match=pattern):
    melu.load_melu(d)


def test_unknown_ids_and_scale_in_state_files(tmp_path):
  d = write_melu(tmp_path / "melu")
  (d / "warm_state.json").write_text(json.dumps({"1": ["1", "2", "77"], "9": ["1"], "2": ["2"]}))
  (d / "warm_state_y.json").write_text(json.dumps({"1": [5, 6, 3], "9": [4], "2": [4]}))
  with pytest.raises(DataError, match=r"warm_state\.json: 1 rating\(s\) name user ids that users\.dat lacks "
                                      r"\(e\.g\. user 9 movie 1"):
    melu.load_melu(d)
  with pytest.warns(DataWarning) as caught:
    data = melu.load_melu(d, bad_rows="drop")
  text = " | ".join(str(w.message) for w in caught)
  assert "1 rating(s) name item ids that movies_extrainfos.dat lacks (e.g. user 1 movie 77" in text
  assert "1 rating(s) outside the scale 1..5 (e.g. user 1 movie 2 rating 6" in text
  assert len(data.scenarios["warm"]) == 2


def test_duplicates_in_state_file(tmp_path):
  d = write_melu(tmp_path / "melu")
  (d / "warm_state.json").write_text(json.dumps({"1": ["1", "2", "1"], "2": ["2"]}))
  (d / "warm_state_y.json").write_text(json.dumps({"1": [5, 3, 2], "2": [4]}))
  with pytest.warns(DataWarning, match=r"warm_state\.json: 1 \(user, item\) pair\(s\) rated more than once"):
    data = melu.load_melu(d)
  warm = data.scenarios["warm"]
  assert sorted(zip(warm.user.tolist(), warm.item.tolist(), warm.rating.tolist())) == [
      (0, 0, 2.0), (0, 1, 3.0), (1, 1, 4.0)]  # the later entry of the list wins


def test_contradicting_state_files(tmp_path):
  d = write_melu(tmp_path / "melu")
  (d / "user_cold_state.json").write_text(json.dumps({"1": ["1"]}))
  (d / "user_cold_state_y.json").write_text(json.dumps({"1": [3]}))
  with pytest.raises(DataError, match=r"1 user\(s\) appear in both"):
    melu.load_melu(d)


def _melu_reference_items(d):
  """MeLU's item_converting as ids (its list positions + 1), straight from its code's rules."""
  load = lambda n: [ln.strip() for ln in (d / n).read_text(encoding="utf-8").splitlines() if ln.strip()]
  rate, genre, director, actor = (load(f"m_{k}.txt") for k in ("rate", "genre", "director", "actor"))
  nan = lambda v: "nan" if v == "N/A" else v
  out = {}
  for line in (d / "movies_extrainfos.dat").read_text(encoding="utf-8").splitlines():
    f = line.split("::")
    def ids(vocab, text, clean=lambda s: s):
      return {vocab.index(clean(v)) + 1 for v in nan(text).split(", ") if clean(v) in vocab}
    out[int(f[0])] = (rate.index(nan(f[3])) + 1 if nan(f[3]) in rate else 0, ids(genre, f[5]),
                      ids(director, f[6], lambda s: re.sub(r"\([^()]*\)", "", s)), ids(actor, f[8]))
  return out


def test_real_release_features_match_melu():
  d = data_dir("melu-ml1m")
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", DataWarning)
    data = melu.load_melu(d)
  ref = _melu_reference_items(d)
  cols = data.items.columns
  for row, mid in enumerate(data.item_raw_ids.tolist()):
    r, g, di, a = ref[mid]
    assert cols["rate"][row] == r
    assert set(cols["genre"][row]) - {0} == g
    assert set(cols["director"][row]) - {0} == di
    assert set(cols["actor"][row]) - {0} == a
  assert data.items.specs[3].vocab_size == 7979  # 7,978 actors (MeLU's code says 8,030) + padding
  assert (data.num_users, data.num_items, len(data.interactions)) == (6040, 3881, 1000205)
  assert data.user_is_cold.sum() == 1208 and data.item_is_cold.sum() == 740
  assert len(data.notes) == 1 and "4 (user, item) pair(s)" in data.notes[0]


def test_real_counts_contract():
  """`metarec data info` reports exactly the issue's task and rating counts."""
  d = data_dir("melu-ml1m")
  before = listing(d)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", DataWarning)
    info = dataset_info(d, protocol="melu_states")
  assert info["dataset"] == "melu-ml1m"
  assert info["scenarios"] == MELU_COUNTS
  assert (info["users"], info["items"], info["ratings"]) == (6040, 3881, 1000205)
  assert listing(d) == before


def test_repeated_vocabulary_entry(tmp_path):
  d = write_melu(tmp_path / "melu")
  (d / "m_genre.txt").write_text("Animation\nComedy\nAnimation\n")
  with pytest.raises(DataError, match=r"m_genre\.txt, line 3: entry 'Animation' repeats line 1"):
    melu.load_melu(d)
