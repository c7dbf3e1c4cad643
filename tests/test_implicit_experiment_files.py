"""The implicit-feedback experiment files: their configs validate and name their data folders."""

from __future__ import annotations

import pathlib

import pytest

from metarec_jax import config as cfg_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name,folder", [("maml_implicit_ml1m", "melu-ml1m"),
                                         ("maml_lastfm", "lastfm-hetrec2011-2k")])
def test_implicit_experiment_configs_validate(name, folder, monkeypatch):
  monkeypatch.setenv("METAREC_DATA", "/data/root")
  config = cfg_lib.load_experiment(ROOT / "experiments" / f"{name}.py")
  cfg_lib.validate(config)
  assert config.data.path == f"/data/root/{folder}"
  assert config.data.feedback == "implicit" and config.eval.num_negatives == 99
  for learner in ("maml", "fomaml", "metasgd", "reptile", "anil"):
    assert learner in config.methods
  assert {"popularity", "pooled", "pooled_finetune"} <= set(config.methods)
