"""Distillation: a small student extractor learns a meta-learned teacher's features."""

from __future__ import annotations

import json

import numpy as np

from tests.conftest import tiny_config

STUDENT = '''
def get_config(teacher_config):
  teacher_config.model.embed_dim = 2
  return teacher_config
'''


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
  c.eval.scenarios = ("warm",)
  c.eval.selection = "per_scenario"
  c.train.eval_every = c.train.checkpoint_every = 20  # validation and a checkpoint at the first and last step
  c.methods = ("pooled_finetune", "student")
  c.variants.student = {"base": "distill", "distill": {"teacher": "pooled_finetune",
                                                       "student": str(tmp_path / "student.py"), "steps": 6}}
  results = experiment.run(c, tmp_path / "run", progress=False, verbose=False)
  rows = {(r["method"], r["scenario"]) for r in results["rows"]}
  assert rows == {(m, s) for m in c.methods for s in c.eval.scenarios}  # the student has its rows
  part = json.loads((tmp_path / "run" / "parts" / "student__seed0.json").read_text())
  assert set(part["selection"]) == {"valid", "valid_warm"}  # selected per scenario
  assert (tmp_path / "run" / "checkpoints" / "student__seed0").is_dir()
  check_against_engine(Recommender.load(tmp_path / "run", method="student"))
  # pooled_finetune's model lives in the checkpoint it shares with pooled: distill finds it there
  # (the default teacher: the last learned method that is not itself a student).
  report = distill_workdir(tmp_path / "run", tmp_path / "student.py", steps=60, lr=3e-2, verbose=False)
  assert report["teacher"] == "pooled_finetune"
  assert report["feature_error_after"] < 0.7 * report["feature_error_before"]
  teacher_rows = {r["scenario"]: r["mae"] for r in results["rows"] if r["method"] == "pooled_finetune"}
  assert {s: v["teacher"]["mae"] for s, v in report["scenarios"].items()} == teacher_rows
  for v in report["scenarios"].values():
    assert np.isfinite(v["student"]["mae"]) and abs(v["student"]["mae"] - v["teacher"]["mae"]) < 0.5
  saved = json.loads((tmp_path / "run" / "distill" / "pooled_finetune__seed0.json").read_text())
  assert saved["feature_error_after"] == report["feature_error_after"]
  assert (tmp_path / "run" / "checkpoints" / "distill_pooled_finetune__seed0").is_dir()  # it resumes
