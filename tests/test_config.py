"""Config overrides, experiment files and the JSON round trip."""

from __future__ import annotations

import pytest

from metarec_jax import ConfigError, apply_overrides, default_config, load_experiment
from metarec_jax.config import diff, from_json, to_json
from metarec_jax.methods import method_config


def test_overrides_parse_by_type():
  c = apply_overrides(default_config(), ["meta.inner_lr=0.5", "train.steps=7", "meta.remat=true",
                                         "model.head=relation", "model.head_hidden=16,8", "model.user_mlp=32",
                                         "methods=maml,anil", "eval.finetune_lrs=0.1"])
  assert c.meta.inner_lr == 0.5 and c.train.steps == 7 and c.meta.remat is True
  assert c.model.head == "relation" and c.model.head_hidden == (16, 8) and c.model.user_mlp == (32,)
  assert c.methods == ("maml", "anil") and c.eval.finetune_lrs == (0.1,)
  assert default_config().train.steps != 7  # the defaults are untouched


def test_unknown_key_lists_the_valid_ones():
  with pytest.raises(ConfigError, match=r"(?s)unknown key 'meta.inner_rate'.*meta\.inner_lr"):
    apply_overrides(default_config(), ["meta.inner_rate=0.1"])


@pytest.mark.parametrize("item,match", [("train.steps=abc", "expected an integer"),
                                        ("meta.inner_lr=fast", "expected a number"),
                                        ("meta.remat=maybe", "expected true or false"),
                                        ("train.steps", "expected KEY=VALUE")])
def test_wrong_types_are_refused(item, match):
  with pytest.raises(ConfigError, match=match):
    apply_overrides(default_config(), [item])


def test_experiment_file_without_get_config(tmp_path):
  path = tmp_path / "bad.py"
  path.write_text("x = 1\n")
  with pytest.raises(ConfigError, match="has no get_config"):
    load_experiment(path)
  with pytest.raises(ConfigError, match="does not exist"):
    load_experiment(tmp_path / "missing.py")


def test_json_round_trip_and_diff():
  c = default_config()
  c.variants.rel = ("model.head=relation",)
  back = from_json(to_json(c))
  assert diff(c, back) == []
  assert back.variants.rel == ("model.head=relation",)
  other = apply_overrides(c, ["train.steps=3"])
  assert diff(c, other) == ["train.steps: 1000 -> 3"]


def test_method_config_applies_variants():
  c = default_config()
  c.variants.rel = ("model.head=relation", "meta.learner=anil")
  assert method_config(c, "rel").model.head == "relation"
  assert method_config(c, "rel").meta.learner == "anil"
  assert method_config(c, "metasgd").meta.learner == "metasgd"
  assert method_config(c, "pooled_finetune").meta.learner == "pooled"
