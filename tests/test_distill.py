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
  from metarec_jax.methods.distill import distill_workdir
  result = distill_workdir(tmp_path / "run", tmp_path / "student.py", steps=60, lr=1e-2, verbose=False)
  assert result["teacher"] == "anil"
  assert result["feature_error_after"] < 0.7 * result["feature_error_before"]
  for scenario in ("warm", "item_cold"):
    v = result["scenarios"][scenario]
    assert np.isfinite(v["student"]["mae"]) and abs(v["student"]["mae"] - v["teacher"]["mae"]) < 0.5
  saved = json.loads((tmp_path / "run" / "distill" / "anil__seed0.json").read_text())
  assert saved["feature_error_after"] == result["feature_error_after"]
  assert (tmp_path / "run" / "checkpoints" / "distill_anil__seed0").is_dir()  # the student resumes like any method


def test_the_model_exposes_its_extractor_and_head():
  from metarec_jax.data import FieldSpec
  from metarec_jax.models import Extractor, MLPHead, RecModel
  from metarec_jax.models.field_transformer import FieldTransformerExtractor, TransformerSpec
  specs = (FieldSpec("g", "categorical", vocab_size=3),)
  tiny = TransformerSpec.named("tiny")
  ft = RecModel(specs, specs, extractor="transformer", transformer=tiny).make_extractor(parent=None)
  assert isinstance(ft, FieldTransformerExtractor) and ft.spec == tiny
  plain = RecModel(specs, specs, embed_dim=3).make_extractor(parent=None)
  assert isinstance(plain, Extractor) and plain.embed_dim == 3
  assert isinstance(RecModel(specs, specs, head_hidden=(5,)).make_head(parent=None), MLPHead)


def test_a_student_is_a_method_of_the_run_and_distill_finds_pooled_finetune(tmp_path):
  from metarec_jax import experiment
  from metarec_jax.methods.distill import distill_workdir
  from metarec_jax.serving import Recommender
  from tests.test_serving import check_against_engine
  (tmp_path / "student.py").write_text(STUDENT)
  c = tiny_config()
  c.eval.scenarios = ("warm", "user_cold")
  c.eval.selection = "per_scenario"
  c.methods = ("pooled_finetune", "student")
  c.variants.student = {"base": "distill", "distill": {"teacher": "pooled_finetune",
                                                       "student": str(tmp_path / "student.py"), "steps": 6}}
  results = experiment.run(c, tmp_path / "run", progress=False, verbose=False)
  rows = {(r["method"], r["scenario"]) for r in results["rows"]}
  assert rows == {(m, s) for m in c.methods for s in c.eval.scenarios}  # the student has its rows
  part = json.loads((tmp_path / "run" / "parts" / "student__seed0.json").read_text())
  assert set(part["selection"]) == {"valid", "valid_warm", "valid_user_cold"}  # selected per scenario
  assert (tmp_path / "run" / "checkpoints" / "student__seed0").is_dir()
  assert experiment.evaluate_workdir(tmp_path / "run", progress=False)["rows"] == results["rows"]  # restores
  check_against_engine(Recommender.load(tmp_path / "run", method="student"))
  # pooled_finetune's model lives in the checkpoint it shares with pooled: distill finds it there.
  report = distill_workdir(tmp_path / "run", tmp_path / "student.py", steps=4, verbose=False)
  assert report["teacher"] == "pooled_finetune"
  teacher_rows = {r["scenario"]: r["mae"] for r in results["rows"] if r["method"] == "pooled_finetune"}
  assert {s: v["teacher"]["mae"] for s, v in report["scenarios"].items()} == teacher_rows
