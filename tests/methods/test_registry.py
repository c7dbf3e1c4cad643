"""The method registry: names, variants in every form, what each method reads, refused overrides."""

from __future__ import annotations

import pathlib

import ml_collections
import pytest

from metarec_jax import ConfigError, apply_overrides, config as cfg_lib, default_config, validate
from metarec_jax.cli import main
from metarec_jax.methods import (METHODS, GlobalMean, MetaLearner, Pooled, PooledFinetune, check_overrides_used,
                                 known_methods, method_config, register_method, resolve, resolve_all)
from metarec_jax.methods.base import Method
from metarec_jax.methods.registry import origins

TINY_EXPERIMENT = '''
from metarec_jax import default_config

def get_config():
  c = default_config()
  c.methods = ("global_mean", "maml", "anil")
  c.train.steps = 2
  return c
'''


def test_names_resolve_to_one_method_type_each():
  c = default_config()
  c.variants.rel = ("model.head=relation", "meta.learner=anil")
  kinds = {name: type(resolve(name, c)) for name in ("global_mean", "pooled", "pooled_finetune", "maml", "rel")}
  assert kinds == {"global_mean": GlobalMean, "pooled": Pooled, "pooled_finetune": PooledFinetune,
                   "maml": MetaLearner, "rel": MetaLearner}
  assert {"global_mean", "item_mean_user_bias", "popularity", "pooled", "pooled_finetune", "distill"} <= set(METHODS)
  assert set(known_methods(c)) >= {"maml", "fomaml", "metasgd", "reptile", "anil", "melu", "rel"}
  with pytest.raises(ConfigError, match="unknown method 'nope'"):
    resolve("nope", c)


def test_pooled_and_pooled_finetune_share_one_checkpoint():
  c = default_config()
  c.variants.pf_wide = ("base=pooled_finetune", "model.embed_dim=64")
  c.variants.pf_grid = ("base=pooled_finetune", "eval.finetune_lrs=0.1")
  owners = {name: resolve(name, c).checkpoint for name in ("pooled", "pooled_finetune", "pf_wide", "pf_grid", "maml",
                                                           "global_mean")}
  # Evaluation settings train nothing: only a variant that changes training owns its own checkpoint.
  assert owners == {"pooled": "pooled", "pooled_finetune": "pooled", "pf_wide": "pf_wide", "pf_grid": "pooled",
                    "maml": "maml", "global_mean": None}
  assert method_config(c, "pooled_finetune").meta.learner == "pooled"


def test_variants_as_strings_dicts_and_functions_are_the_same_method():
  c = default_config()
  c.variants.as_strings = ("meta.learner=anil", "model.head_hidden=16,8", "meta.inner_lr=0.5")
  c.variants.as_dict = {"meta": {"learner": "anil", "inner_lr": 0.5}, "model": {"head_hidden": (16, 8)}}

  def as_function(config):
    config.meta.learner = "anil"
    config.model.head_hidden = (16, 8)
    config.meta.inner_lr = 0.5
    return config

  c.variants.as_function = as_function
  configs = {n: resolve(n, c).config for n in ("as_strings", "as_dict", "as_function")}
  flat = {n: {k: v for k, v in cfg_lib.flat_keys(x).items() if k != "variants"} for n, x in configs.items()}
  assert flat["as_strings"] == flat["as_dict"] == flat["as_function"]
  assert flat["as_dict"]["meta.inner_lr"] == 0.5 and flat["as_dict"]["model.head_hidden"] == (16, 8)
  assert {n: resolve(n, c).variant_keys for n in configs}["as_function"] == {
      "meta.learner", "model.head_hidden", "meta.inner_lr"}
  # config.json holds data only: the function is written out as the nested dict of what it changes.
  back = cfg_lib.from_json(cfg_lib.to_json(c))
  assert back.variants.as_function.to_dict() == {"meta": {"learner": "anil", "inner_lr": 0.5},
                                                 "model": {"head_hidden": (16, 8)}}
  assert cfg_lib.diff(back, cfg_lib.canonical(c)) == []


@pytest.mark.parametrize("variant,match", [
    ({"meta": {"inner_lr": "fast"}}, "expected a number"),
    ({"meta": {"inner_rate": 0.1}}, "unknown key 'meta.inner_rate'"),
    (("meta.inner_steps=two",), "expected an integer"),
    (("base=nope",), "names no method or learner"),
    (lambda config: 3, "must return the changed ConfigDict"),
])
def test_bad_variants_name_the_variant_and_the_key(variant, match):
  c = default_config()
  c.variants.bad = variant
  c.methods = ("bad",)
  with pytest.raises(ConfigError, match=match):
    validate(c)


def test_an_override_no_method_reads_is_refused_with_the_reason_per_method():
  c = default_config()
  c.methods = ("global_mean", "maml", "anil")
  with pytest.raises(ConfigError, match=r"(?s)--set meta\.learner: no method of this run uses it.*"
                                        r"global_mean is a baseline.*maml sets meta\.learner='maml' itself"):
    check_overrides_used(c, ["meta.learner"])
  check_overrides_used(c, ["meta.inner_lr", "data.query_size", "methods"])  # read by someone: fine
  c.methods = ("global_mean", "item_mean_user_bias")
  with pytest.raises(ConfigError, match="meta.inner_lr"):
    check_overrides_used(c, ["meta.inner_lr"])
  c.methods = ("pooled", "global_mean")
  with pytest.raises(ConfigError, match="pooled does not read meta.inner_steps"):
    check_overrides_used(c, ["meta.inner_steps"])  # the pooled model never adapts
  c.methods = ("pooled", "maml")
  check_overrides_used(c, ["meta.inner_steps"])  # maml reads it


def test_run_refuses_a_shadowed_or_mistyped_learner_before_anything_runs(tmp_path, capsys):
  exp = tmp_path / "tiny.py"
  exp.write_text(TINY_EXPERIMENT)
  for value in ("mamll", "fomaml"):
    assert main(["run", str(exp), "--set", f"meta.learner={value}", "--workdir", str(tmp_path / value)]) == 2
    err = capsys.readouterr().err
    assert "--set meta.learner: no method of this run uses it" in err and "anil sets meta.learner" in err
    assert not (tmp_path / value).exists()
  # A variant that takes its learner from meta.learner reads the key: the value is then checked.
  c = default_config()
  c.methods = ("mine",)
  c.variants.mine = ("model.head=relation",)
  check_overrides_used(c, ["meta.learner"])
  with pytest.raises(ConfigError, match="names no method or learner"):
    validate(apply_overrides(c, ["meta.learner=mamll"]))


def test_registering_a_method_and_reregistering_from_the_same_place():
  class Mine(Method):
    reads = ()

  register_method("test_registry_mine", Mine)
  register_method("test_registry_mine", Mine)  # the same class again: fine (a re-imported file)
  try:
    class Other(Method):
      pass
    with pytest.raises(ValueError, match="already registered"):
      register_method("test_registry_mine", Other)
    c = default_config()
    c.methods = ("test_registry_mine",)
    m = resolve("test_registry_mine", c)
    assert isinstance(m, Mine) and m.checkpoint is None and not m.servable
    assert m.ignores("model.embed_dim") and not m.ignores("eval.metrics")
    # A method defined outside the package: the run folder records where, to import it again.
    assert [pathlib.Path(o["file"]).name for o in origins(c)] == ["test_registry.py"]
  finally:
    METHODS.pop("test_registry_mine", None)


def test_resolve_all_keeps_the_order_of_config_methods():
  c = default_config()
  c.methods = ("maml", "global_mean", "pooled_finetune")
  assert [m.name for m in resolve_all(c)] == ["maml", "global_mean", "pooled_finetune"]
  assert isinstance(c.variants, ml_collections.ConfigDict)
