"""A diverging method x seed is recorded as failed; the run's other methods still finish and are written."""

from __future__ import annotations

import json

import orbax.checkpoint as ocp
import pytest

from metarec_jax import experiment
from tests.conftest import tiny_config


def test_a_diverging_method_fails_alone_and_the_others_finish(tmp_path):
  c = tiny_config()
  c.methods = ("global_mean", "wild", "maml")
  c.variants.wild = ("optimizer.lr=1e30",)  # maml at a rate that diverges
  c.train.checkpoint_every = 1
  c.eval.scenarios = ("warm", "user_cold")
  wd = tmp_path / "wd"
  with pytest.raises(experiment.NonFiniteError,
                     match=r"^1 of 3 method x seed failed; the others' results are in .*results.json: "
                           r"wild seed 0: (loss|grad_norm|val_mae) is (nan|inf) at step \d+") as err:
    experiment.run(c, wd, progress=False, verbose=False)
  assert "\n" not in str(err.value)
  results = json.loads((wd / "results.json").read_text())
  assert {r["method"] for r in results["rows"]} == {"global_mean", "maml"}
  assert [(f["method"], f["seed"]) for f in results["failed"]] == [("wild", 0)]
  assert "wild seed 0" in results["failed"][0]["error"]
  assert not (wd / "parts" / "wild__seed0.json").exists() and (wd / "parts" / "maml__seed0.json").exists()
  log = [json.loads(line) for line in (wd / "metrics.jsonl").read_text().splitlines()]
  assert [r["method"] for r in log if "failed" in r] == ["wild"]
  with ocp.CheckpointManager((wd / "checkpoints" / "wild__seed0").absolute()) as mgr:
    assert mgr.latest_step() is not None  # the last good checkpoint stays
  env = json.loads((wd / "env.json").read_text())
  assert env["sessions"][-1]["status"] == "failed"
  assert not (wd / "lock").exists()
