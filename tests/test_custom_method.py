"""A method written in its own file (experiments/custom_method.py) gets what a built-in method gets."""

from __future__ import annotations

import json
import pathlib
import sys

import pytest

from metarec_jax import apply_overrides, experiment, load_experiment
from metarec_jax.meta.learners import LEARNERS
from metarec_jax.methods import METHODS
from metarec_jax.models import registry as models
from metarec_jax.pyfile import module_name
from metarec_jax.serving import Recommender
from tests.conftest import tiny_config
from tests.test_serving import check_against_engine

FILE = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "custom_method.py"


@pytest.fixture(scope="module")
def custom_run(tmp_path_factory):
  c = load_experiment(FILE)
  shrink = tiny_config()
  c.data.synthetic = shrink.data.synthetic
  c = apply_overrides(c, ["methods=item_mean,maml_sq_gated", "train.steps=4", "train.eval_every=2",
                          "train.tasks_per_batch=8", "model.embed_dim=4", "eval.tasks_per_chunk=64",
                          "eval.bias_regs=1.0,5.0"])
  wd = tmp_path_factory.mktemp("custom") / "wd"
  return c, wd, experiment.run(c, wd, progress=False, verbose=False)


def test_custom_head_learner_and_method_run_and_resume(custom_run):
  c, wd, results = custom_run
  assert {r["method"] for r in results["rows"]} == set(c.methods)
  assert (wd / "checkpoints" / "maml_sq_gated__seed0").is_dir()
  sel = json.loads((wd / "parts" / "item_mean__seed0.json").read_text())["selection"]["valid"]
  assert sel["item_reg"] in (1.0, 5.0)
  assert json.loads((wd / "run.json").read_text())["imports"][0]["file"] == str(FILE)
  # config.json holds the function variant as data.
  saved = json.loads((wd / "config.json").read_text())
  assert saved["variants"]["maml_sq_gated"]["meta"]["learner"] == "maml_sq"
  assert experiment.run(c, wd, progress=False, verbose=False)["rows"] == results["rows"]  # a rerun reuses it


def test_a_reopened_run_imports_the_file_that_defines_its_methods(custom_run):
  _, wd, results = custom_run
  # As in a fresh process: the registrations and the module are gone.
  models.HEADS.pop("gated_bilinear")
  LEARNERS.pop("maml_sq")
  METHODS.pop("item_mean")
  sys.modules.pop(module_name(FILE))
  assert experiment.evaluate_workdir(wd, progress=False)["rows"] == results["rows"]
  assert "gated_bilinear" in models.HEADS and "maml_sq" in LEARNERS and "item_mean" in METHODS
  rec = Recommender.load(wd, method="maml_sq_gated")
  assert rec.model.head == "gated_bilinear"
  check_against_engine(rec)
  with pytest.raises(ValueError, match="baseline"):
    Recommender.load(wd, method="item_mean")
