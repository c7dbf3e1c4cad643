"""metarec data info: format detection, counts, JSON shape and the command line."""

from __future__ import annotations

import json

import pytest

from metarec_jax.cli import build_parser
from metarec_jax.data.info import detect_format
from metarec_jax.data.parsing import MissingDataFile
from tests.conftest import data_dir
from tests.data.tiny_files import write_melu, write_ml100k, write_recbole

pytestmark = pytest.mark.filterwarnings("ignore::metarec_jax.data.parsing.DataWarning")


def _cli(argv, capsys):
  args = build_parser().parse_args(argv)
  rc = args.func(args)
  out = capsys.readouterr()
  return rc, out.out, out.err


def test_detect_format(tmp_path):
  assert detect_format(write_melu(tmp_path / "a")) == "melu"
  assert detect_format(write_ml100k(tmp_path / "b")) == "movielens"
  assert detect_format(write_recbole(tmp_path / "c")) == "recbole"
  from tests.data.test_lastfm import write_lastfm
  assert detect_format(write_lastfm(tmp_path / "d")) == "lastfm"
  with pytest.raises(MissingDataFile, match="metarec data download melu-ml1m.*tab-separated NAME.inter.*Last.fm"):
    detect_format(tmp_path)


def test_info_json_shape(tmp_path, capsys):
  d = write_melu(tmp_path / "melu")
  rc, out, _ = _cli(["data", "info", str(d), "--json", "--set", "min_ratings=1"], capsys)
  assert rc == 0
  info = json.loads(out)
  assert list(info)[:5] == ["dataset", "users", "items", "ratings", "scenarios"]
  assert info["scenarios"] == {"warm": {"tasks": 2, "ratings": 4}, "user_cold": {"tasks": 2, "ratings": 3},
                               "item_cold": {"tasks": 2, "ratings": 3},
                               "user_item_cold": {"tasks": 1, "ratings": 1}}
  assert (info["users"], info["items"], info["ratings"]) == (4, 4, 11)
  assert info["protocol"] == "melu_states"


def test_info_text_and_protocols(tmp_path, capsys):
  d = write_recbole(tmp_path / "rb")
  rc, out, _ = _cli(["data", "info", str(d), "--set", "data.min_ratings=2"], capsys)
  assert rc == 0 and "protocol random_users" in out and "user_cold" in out
  rc, out, _ = _cli(["data", "info", str(d), "--protocol", "temporal", "--json", "--set", "min_ratings=1",
                     "--set", "new_item_year=1998"], capsys)
  assert rc == 0 and set(json.loads(out)["scenarios"]) <= {"warm", "user_cold", "item_cold", "user_item_cold"}


def test_info_errors_are_one_line(tmp_path, capsys):
  rc, _, err = _cli(["data", "info", str(tmp_path / "absent")], capsys)
  assert rc == 2 and err.startswith("metarec: error: data directory") and err.count("\n") == 1
  d = write_melu(tmp_path / "melu")
  (d / "users.dat").write_text("1::F::1::10\n")
  rc, _, err = _cli(["data", "info", str(d)], capsys)
  assert rc == 2 and "users.dat, line 1" in err
  rc, _, err = _cli(["data", "info", str(d), "--set", "nope=1"], capsys)
  assert rc == 2 and "unknown key 'data.nope'" in err


def test_real_info_cli(capsys):
  d = data_dir("melu-ml1m")
  rc, out, _ = _cli(["data", "info", str(d), "--protocol", "melu_states"], capsys)
  assert rc == 0
  for name, tasks, ratings in (("warm", 2653, 121811), ("user_cold", 668, 30478), ("item_cold", 2863, 106814),
                               ("user_item_cold", 723, 26790)):
    assert any(line.split() == [name, str(tasks), str(ratings)] for line in out.splitlines()), name


def test_metarec_main_has_data_commands(tmp_path, capsys):
  from metarec_jax.cli import main
  d = write_ml100k(tmp_path / "ml")
  assert main(["data", "info", str(d), "--json", "--protocol", "random_users", "--set", "min_ratings=2"]) == 0
  info = json.loads(capsys.readouterr().out)
  assert info["dataset"] == "ml-100k" and info["ratings"] == 20
