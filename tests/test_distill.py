"""Distillation: a small student extractor learns a meta-learned teacher's features."""

from __future__ import annotations

import json

import numpy as np

from metarec_jax import run
from tests.conftest import tiny_config

STUDENT = '''
def get_config(teacher_config):
  teacher_config.model.embed_dim = 2
  return teacher_config
'''


def test_distillation_lowers_the_students_feature_error(tmp_path):
  c = tiny_config()
  c.methods = ("anil",)
  c.eval.scenarios = ("warm", "item_cold")
  c.model.embed_dim = 6
  run(c, tmp_path / "run", progress=False, verbose=False)
  (tmp_path / "student.py").write_text(STUDENT)
  from metarec_jax.distill import distill_workdir
  result = distill_workdir(tmp_path / "run", tmp_path / "student.py", steps=60, lr=1e-2, verbose=False)
  assert result["teacher"] == "anil"
  assert result["feature_error_after"] < 0.7 * result["feature_error_before"]
  for scenario in ("warm", "item_cold"):
    v = result["scenarios"][scenario]
    assert np.isfinite(v["student"]["mae"]) and abs(v["student"]["mae"] - v["teacher"]["mae"]) < 0.5
  saved = json.loads((tmp_path / "run" / "distill" / "anil__seed0.json").read_text())
  assert saved["feature_error_after"] == result["feature_error_after"]


def test_extractor_of_rebuilds_the_models_extractor():
  from metarec_jax.data import FieldSpec
  from metarec_jax.distill import extractor_of, head_of
  from metarec_jax.models import Extractor, MLPHead, RecModel
  from metarec_jax.models.field_transformer import FieldTransformerExtractor, TransformerSpec
  specs = (FieldSpec("g", "categorical", vocab_size=3),)
  tiny = TransformerSpec.named("tiny")
  ft = extractor_of(RecModel(specs, specs, extractor="transformer", transformer=tiny))
  assert isinstance(ft, FieldTransformerExtractor) and ft.spec == tiny
  plain = extractor_of(RecModel(specs, specs, embed_dim=3))
  assert isinstance(plain, Extractor) and plain.embed_dim == 3
  assert isinstance(head_of(RecModel(specs, specs, head_hidden=(5,))), MLPHead)
