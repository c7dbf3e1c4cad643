"""Named presets: the strong configuration by name in every experiment, recorded in config.json."""

from __future__ import annotations

import json

import pytest

from metarec_jax import config as cfg_lib, default_config
from metarec_jax.methods import known_methods, resolve
from metarec_jax.methods.presets import ITEM_COLD_SHARE, PRESETS, with_presets


def _settings(config):
  """Every key but the variants and the method list (what a method trains and scores with)."""
  return {k: v for k, v in cfg_lib.flat_keys(config).items() if k not in ("variants", "methods")}


def test_presets_resolve_in_any_experiment_and_are_known():
  c = default_config()
  c.methods = ("item_mean_user_bias", "melu_plus", "melu_ridge", "maml_ridge", "melu_ridge_long")
  assert set(PRESETS) <= set(known_methods(c))
  plus, ridge = resolve("melu_plus", c).config, resolve("melu_ridge", c).config
  assert (plus.meta.learner, plus.model.residual, plus.model.item_id, plus.model.item_stats,
          plus.model.support_vector, plus.model.ridge_dim) == ("melu", True, True, True, True, 0)
  assert ridge.model.ridge_dim == 16 and resolve("maml_ridge", c).config.meta.learner == "maml"
  long = resolve("melu_ridge_long", c).config
  assert long.train.steps == 2 * c.train.steps and long.model.ridge_dim == 16
  cfg_lib.validate(c)


def test_item_cold_simulation_only_where_an_item_cold_scenario_is_scored():
  c = default_config()
  assert resolve("melu_plus", c).config.train.item_cold_share == ITEM_COLD_SHARE
  c.eval.scenarios = ("warm", "user_cold")
  assert resolve("melu_plus", c).config.train.item_cold_share == 0.0


def test_an_experiments_own_variant_takes_precedence():
  c = default_config()
  c.variants.melu_plus = ("meta.learner=melu", "model.residual=true")
  mc = resolve("melu_plus", c).config
  assert mc.model.residual and not mc.model.item_id
  assert with_presets(c, ["melu_plus"]) is c  # nothing added


def test_the_presets_equal_the_variants_melu_ml100k_used_to_define():
  """The same settings as the hand-written variants the ML-100K numbers were measured with."""
  c = default_config()
  c.eval.scenarios = ("user_cold",)
  old = default_config()
  old.eval.scenarios = ("user_cold",)
  old.variants.melu_plus = ("meta.learner=melu", "model.residual=true", "model.item_id=true",
                            "model.item_stats=true", "model.support_vector=true")
  old.variants.melu_ridge = old.variants.melu_plus + ("model.ridge_dim=16",)
  for name in ("melu_plus", "melu_ridge"):
    assert _settings(resolve(name, c).config) == _settings(resolve(name, old).config)


def test_a_run_records_the_presets_it_uses_in_config_json(tmp_path):
  from metarec_jax.rundir import RunDir
  c = default_config()
  c.methods = ("global_mean", "melu_ridge_long")
  RunDir.create(tmp_path / "run", cfg_lib.canonical(c), [])
  saved = json.loads((tmp_path / "run" / "config.json").read_text())
  assert saved["variants"]["melu_ridge_long"]["model"]["ridge_dim"] == 16
  assert saved["variants"]["melu_ridge_long"]["train"]["steps"] == 2 * c.train.steps
  assert "melu_plus" not in saved["variants"]  # only the presets the run uses
  reopened = RunDir.open(tmp_path / "run").config
  assert resolve("melu_ridge_long", reopened).config.train.steps == 2 * c.train.steps


def test_unknown_names_still_fail_with_the_presets_listed():
  c = default_config()
  with pytest.raises(cfg_lib.ConfigError, match="melu_ridge"):
    resolve("melu_ridgee", c)
