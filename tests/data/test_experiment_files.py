"""The real-data experiment files: their configs validate and their data prepares."""

from __future__ import annotations

import pathlib
import warnings

import pytest

from metarec_jax import config as cfg_lib
from metarec_jax.data.parsing import DataWarning
from tests.conftest import data_dir

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name,default_folder", [("melu_ml100k", "ml-100k"), ("maml_recbole", None)])
def test_config_validates(name, default_folder, monkeypatch):
  monkeypatch.delenv("METAREC_DATA", raising=False)
  config = cfg_lib.load_experiment(ROOT / "experiments" / f"{name}.py")
  cfg_lib.validate(config)
  assert config.data.path == ""  # without METAREC_DATA: given on the command line
  if default_folder:
    monkeypatch.setenv("METAREC_DATA", "/data/root")
    config = cfg_lib.load_experiment(ROOT / "experiments" / f"{name}.py")
    assert config.data.path == f"/data/root/{default_folder}"


TEMPORAL = ["data.protocol=temporal", "eval.scenarios=warm,user_cold,item_cold,user_item_cold"]


@pytest.mark.parametrize("name,folder,overrides,tasks", [
    ("melu_ml100k", "ml-100k", [], {"train": 466, "user_cold": 58}),  # random_users, the file's protocol
    ("melu_ml100k", "ml-100k", TEMPORAL,
     {"train": 294, "warm": 37, "user_cold": 86, "item_cold": 424, "user_item_cold": 125}),
    ("maml_recbole", "ml-100k/recbole_atomic", [], {"train": 466, "user_cold": 58}),
])
def test_prepares_on_real_data(name, folder, overrides, tasks):
  from metarec_jax import experiment
  config = cfg_lib.load_experiment(ROOT / "experiments" / f"{name}.py")
  config = cfg_lib.apply_overrides(config, [f"data.path={data_dir(folder)}", *overrides])
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", DataWarning)
    prep = experiment.prepare(config, 0)
  got = {"train": prep.train.num_tasks, **{s: b.num_tasks for s, b in prep.test_batches.items()}}
  assert got == tasks


@pytest.mark.parametrize("path", sorted((ROOT / "experiments").glob("*.py")), ids=lambda p: p.name)
def test_every_experiment_file_loads_validates_and_names_known_methods(path):
  from metarec_jax.methods import resolve_all
  config = cfg_lib.load_experiment(path)
  cfg_lib.validate(config)
  assert [m.name for m in resolve_all(config)] == list(config.methods)
