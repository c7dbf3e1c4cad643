"""Sweeps: trial generation, validation-only selection, a tiny sweep end to end with resume, TPE, population, CLI."""

from __future__ import annotations

import json
import math
import shutil
import sys

import pytest

from metarec_jax import ConfigError, load_experiment
from metarec_jax import sweep as sw
from metarec_jax.cli import main
from metarec_jax.train.loop import NonFiniteError
from tests.conftest import tiny_config

EXPERIMENT = '''
"""Tiny experiment for the sweep tests."""
from metarec_jax import default_config

def get_config():
  c = default_config()
  c.name = "tiny_sweep"
  c.methods = ("global_mean", "maml")
  c.data.synthetic.update(dict(num_users=160, num_items=120, latent_dim=3, feature_share=0.35, cold_user_share=0.25,
                               cold_item_share=0.3, min_ratings=14, max_ratings=20, noise=0.3, seed=0))
  c.model.embed_dim = 4
  c.model.head_hidden = (8,)
  c.train.steps = 4
  c.train.tasks_per_batch = 8
  c.train.eval_every = 2
  c.train.checkpoint_every = 2
  c.train.log_every = 2
  c.train.tensorboard = False
  c.eval.tasks_per_chunk = 64
  c.eval.scenarios = ("user_cold",)
  c.eval.metrics = ("mae", "rmse")
  return c
'''

# The fixture's sweep varies train.steps: its trials compile the same programs (JAX's persistent cache in
# conftest shares them), so the module stays fast; the population test varies the rates.
GRID = ["train.steps=2,4"]


class Killed(Exception):
  pass


# --------------------------------------------------------------------------- trial generation


def test_grid_is_the_cartesian_product_with_typed_values():
  c = tiny_config()
  spaces = sw.parse_spaces(["optimizer.lr=1e-3,1e-2", "meta.inner_steps=1,2,3", "model.head_hidden=8;16,16",
                            "meta.first_order=true,false"], c)
  trials = sw.grid_trials(spaces)
  assert len(trials) == 2 * 3 * 2 * 2
  assert trials[0] == {"optimizer.lr": 0.001, "meta.inner_steps": 1, "model.head_hidden": (8,),
                       "meta.first_order": True}
  assert trials[1]["meta.first_order"] is False  # the last key varies fastest
  assert {t["model.head_hidden"] for t in trials} == {(8,), (16, 16)}
  assert len({sw.trial_name(t) for t in trials}) == len(trials)
  assert sw.trial_name(trials[0]) == "optimizer.lr=0.001,meta.inner_steps=1,model.head_hidden=8,meta.first_order=true"


def test_ranges_and_their_errors():
  c = tiny_config()
  log3 = sw.parse_space("optimizer.lr=log:1e-4:1e-2:3", c)
  assert log3.discrete and log3.values == (1e-4, 1e-3, 1e-2)
  assert sw.parse_space("meta.inner_steps=int:1:3", c).values == (1, 2, 3)
  assert sw.parse_space("meta.inner_lr=uniform:0:1:3", c).values == (0.0, 0.5, 1.0)
  cont = sw.parse_space("optimizer.lr=log:1e-4:1e-2", c)
  assert not cont.discrete and (cont.kind, cont.low, cont.high) == ("log", 1e-4, 1e-2)
  with pytest.raises(ConfigError, match="continuous range"):
    sw.grid_trials([cont])
  for bad, why in [("optimizer.lr=log:0:1", "LO > 0"), ("optimizer.lr=uniform:2:1", "below"),
                   ("meta.inner_steps=uniform:1:3", "integer"), ("optimizer.lr=log:1", "expected log:LO:HI"),
                   ("optimizer.lr=abc", "expected a number"), ("optimizer.lr", "KEY=VALUES"),
                   ("optimizer.lrr=1e-3", "did you mean 'optimizer.lr'")]:
    with pytest.raises(ConfigError, match=why):
      sw.parse_space(bad, c)
  with pytest.raises(ConfigError, match="more than once"):
    sw.parse_spaces(["optimizer.lr=1e-3", "optimizer.lr=1e-2"], c)


def test_random_trials_are_reproducible_distinct_and_in_range():
  c = tiny_config()
  spaces = sw.parse_spaces(["optimizer.lr=log:1e-4:1e-2", "meta.inner_lr=uniform:0.05:0.5",
                            "meta.inner_steps=1,2"], c)
  a, b = sw.random_trials(spaces, 8, seed=3), sw.random_trials(spaces, 8, seed=3)
  assert a == b and a != sw.random_trials(spaces, 8, seed=4)
  assert len({sw.trial_name(t) for t in a}) == 8
  for t in a:
    assert 1e-4 <= t["optimizer.lr"] <= 1e-2 and 0.05 <= t["meta.inner_lr"] <= 0.5
    assert t["optimizer.lr"] == float(f"{t['optimizer.lr']:.3g}")  # 3 significant digits: name == value
    assert t["meta.inner_steps"] in (1, 2)
  lists = sw.parse_spaces(["meta.inner_steps=1,2", "meta.first_order=true,false"], c)
  assert len(sw.random_trials(lists, 10, seed=0)) == 4  # only 4 distinct trials exist


def test_trial_names_are_safe_folder_names():
  name = sw.trial_name({"model.text_features": "a/b c.npy", "optimizer.lr": 0.001})
  assert "/" not in name and " " not in name and name.startswith("model.text_features=a_b_c.npy")
  long = sw.trial_name({f"k{i}": "x" * 30 for i in range(10)})
  assert len(long) <= sw.MAX_NAME and long != sw.trial_name({f"k{i}": "y" * 30 for i in range(10)})


# --------------------------------------------------------------------------- selection on validation only


def _part(val_warm, test_mae, selected_on=None):
  selection = {"valid": {"best_step": 4, "val_mae": val_warm}, "valid_user_cold": {"val_mae": val_warm + 1}}
  return {"rows": [{"method": "maml", "scenario": s, "seed": 0, "mae": test_mae} for s in ("warm", "user_cold")],
          "selection": selection, "selected_on": selected_on or {"warm": "valid", "user_cold": "valid"}}


def test_selection_reads_validation_values_never_test_rows():
  good_test, good_valid = _part(val_warm=0.95, test_mae=0.70), _part(val_warm=0.90, test_mae=0.99)
  a = sw.Trial("a", {"optimizer.lr": 0.1}, status=sw.DONE,
               score=sw.validation_score(good_test, ["warm", "user_cold"]),
               test=sw.test_metrics(good_test["rows"], "maml", ["mae"]))
  b = sw.Trial("b", {"optimizer.lr": 0.01}, status=sw.DONE,
               score=sw.validation_score(good_valid, ["warm", "user_cold"]),
               test=sw.test_metrics(good_valid["rows"], "maml", ["mae"]))
  failed = sw.Trial("c", {"optimizer.lr": 1.0}, status=sw.FAILED)
  assert a.test["warm"]["mae"] < b.test["warm"]["mae"]  # test prefers a ...
  assert sw.select_best([a, failed, b]).name == "b"      # ... validation chooses b
  # eval.selection=per_scenario: each scenario's value comes from the set it was selected on
  per = _part(0.9, 0.5, selected_on={"warm": "valid", "user_cold": "valid_user_cold"})
  assert sw.validation_score(per, ["warm", "user_cold"]) == pytest.approx((0.9 + 1.9) / 2)
  assert sw.validation_score({"rows": [], "selection": {}, "selected_on": {}}, ["warm"]) is None
  assert sw.select_best([failed]) is None


def test_refusals_are_clear(tmp_path):
  c = tiny_config()
  c.methods = ("global_mean", "maml")
  for kwargs, why in [(dict(grid=["optimizer.lr=1e-3"], method="global_mean"), "baseline"),
                      (dict(grid=["data.query_size=5,6"]), "could not be compared"),
                      (dict(grid=["tanp.z_dim=4,8"]), "maml does not read tanp.z_dim"),
                      (dict(grid=["model.embed_dim=4,8"], vectorize=True), "optimizer.lr / meta.inner_lr"),
                      (dict(grid=["optimizer.lr=1e-3"], random=2, tpe=2), "choose one"),
                      (dict(grid=["optimizer.lr=-1,1e-3"]), "optimizer.lr must be > 0"),
                      (dict(grid=["optimizer.lr=1e-3"], overrides=["tanp.z_dim=4"]), "no method")]:
    with pytest.raises(ConfigError, match=why):
      sw.run_sweep(c, kwargs.pop("grid"), tmp_path / "never", verbose=False, **kwargs)
  c.methods = ("global_mean",)
  with pytest.raises(ConfigError, match="no learned method"):
    sw.run_sweep(c, ["optimizer.lr=1e-3"], tmp_path / "never", verbose=False)
  assert not (tmp_path / "never" / "sweep.json").exists()


# --------------------------------------------------------------------------- a tiny sweep end to end


@pytest.fixture(scope="module")
def experiment_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("exp") / "tiny_sweep.py"
  path.write_text(EXPERIMENT)
  return path


@pytest.fixture(scope="module")
def swept(experiment_file, tmp_path_factory):
  """A 2-trial grid sweep killed in its second trial at step 3, then resumed (the resumed steps recorded)."""
  root = tmp_path_factory.mktemp("sweep") / "tiny-sweep"
  config = load_experiment(experiment_file)
  calls = []

  def kill(name, seed, step):
    calls.append(step)
    if len(calls) == 2 + 3:  # trial 1: steps 1..2; trial 2: killed at step 3 (its checkpoint: step 2)
      raise Killed

  with pytest.raises(Killed):
    sw.run_sweep(config, GRID, root, progress=False, verbose=False, on_step=kill)
  killed = json.loads((root / sw.SWEEP_JSON).read_text())
  resumed = []
  result = sw.run_sweep(config, GRID, root, progress=False, verbose=False,
                        on_step=lambda name, seed, step: resumed.append(step))
  return config, root, result, killed, resumed


def test_sweep_writes_a_run_folder_per_trial_and_a_report(swept):
  config, root, result, _, _ = swept
  names = ["train.steps=2", "train.steps=4"]
  assert [t.name for t in result.trials] == names
  data = json.loads((root / sw.SWEEP_JSON).read_text())
  assert data["method"] == "maml" and data["metric"] == "val_mae" and data["mode"] == "grid"
  for t, entry in zip(result.trials, data["trials"]):
    run = root / entry["run"]
    assert (run / "results.json").is_file() and (run / "checkpoints" / "maml__seed0").is_dir()
    saved = json.loads((run / "config.json").read_text())
    assert saved["methods"] == ["maml"] and saved["train"]["steps"] == entry["values"]["train.steps"]
    assert entry["status"] == "done" and entry["score"] == pytest.approx(t.score)
    part = json.loads((run / "parts" / "maml__seed0.json").read_text())
    assert t.score == pytest.approx(part["selection"]["valid"]["val_mae"])  # the run's own selection value
    assert set(entry["test"]) == {"user_cold"} and set(entry["test"]["user_cold"]) == {"mae", "rmse"}
  best = min(result.trials, key=lambda t: t.score)
  assert data["best"] == best.name == result.best.name
  md = (root / sw.SWEEP_MD).read_text()
  assert "| train.steps | val_mae | test user_cold mae | status |" in md and "### test: user_cold" in md
  assert f"| **best** | {best.values['train.steps']} | **{best.score:.4f}** |" in md
  assert result.best_command("exp.py") == f"metarec run exp.py --set train.steps={best.values['train.steps']}"


def test_a_killed_sweep_resumes_skipping_finished_trials(swept):
  config, root, result, killed, resumed = swept
  assert [t["status"] for t in killed["trials"]] == ["done", "running"]
  assert resumed == [3, 4]  # trial 1 not trained again; trial 2 from its step-2 checkpoint
  again = []
  rerun = sw.run_sweep(config, GRID, root, progress=False, verbose=False,
                       on_step=lambda *a: again.append(a))
  assert not again and [t.score for t in rerun.trials] == [t.score for t in result.trials]


def test_a_diverging_trial_is_recorded_as_failed_and_the_sweep_goes_on(swept, tmp_path, monkeypatch):
  config, root, result, _, _ = swept
  copy = tmp_path / "copy"
  shutil.copytree(root, copy)
  from metarec_jax import experiment

  def diverge(*args, **kwargs):
    raise NonFiniteError("maml seed 0: loss is nan at step 3. Lower optimizer.lr")

  monkeypatch.setattr(experiment, "run", diverge)
  out = sw.run_sweep(config, ["train.steps=2,4,6"], copy, progress=False, verbose=False)
  assert [t.status for t in out.trials] == ["done", "done", "failed"]
  assert "nan" in out.trials[2].error and out.best.name == result.best.name
  assert "failed: maml seed 0: loss is nan" in (copy / sw.SWEEP_MD).read_text()


def test_vectorized_sweep_trains_one_population_into_the_trial_folders(swept, tmp_path):
  config, root, result, _, _ = swept
  steps = []
  out = sw.run_sweep(config, ["optimizer.lr=1e-3,1e-2"], tmp_path / "vec", progress=False, verbose=False,
                     vectorize=True, on_step=lambda name, seed, step: steps.append(step))
  assert steps == [1, 1, 2, 2, 3, 3, 4, 4]  # both members step together (one by one: 1, 2, 3, 4, 1, ...)
  assert out.vectorize and [t.name for t in out.trials] == ["optimizer.lr=0.001", "optimizer.lr=0.01"]
  # optimizer.lr=1e-3 is the default: that member is the plain sweep's train.steps=4 trial, trained alone
  assert out.trials[0].score == pytest.approx(result.trials[1].score, rel=1e-4)
  assert out.trials[0].test["user_cold"]["mae"] == pytest.approx(result.trials[1].test["user_cold"]["mae"], rel=1e-4)
  for t in out.trials:
    run = tmp_path / "vec" / t.name
    assert (run / "checkpoints" / "maml__seed0").is_dir()
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if "loss" in r] == [2, 4]  # its own member's training lines, once
  losses = [[json.loads(x).get("loss") for x in (tmp_path / "vec" / t.name / "metrics.jsonl").read_text().splitlines()]
            for t in out.trials]
  assert losses[0] != losses[1]  # each folder got its own member's values
  assert not (tmp_path / "vec" / "population.jsonl").exists()  # every record was routed to its trial


# --------------------------------------------------------------------------- TPE


def test_tpe_search_on_a_range_is_seeded_and_stays_in_range():
  pytest.importorskip("optuna")
  c = tiny_config()
  spaces = sw.parse_spaces(["optimizer.lr=log:1e-4:1e-1", "meta.inner_steps=1,2"], c)

  def objective(values):
    return (math.log10(values["optimizer.lr"]) + 2.5) ** 2 + values["meta.inner_steps"]

  runs = [sw.tpe_search(spaces, 6, objective, seed=7) for _ in range(2)]
  assert runs[0] == runs[1] and len(runs[0]) == 6
  assert all(1e-4 <= v["optimizer.lr"] <= 1e-1 and v["meta.inner_steps"] in (1, 2) for v, _ in runs[0])
  more = sw.tpe_search(spaces, 2, objective, seed=7, history=runs[0])
  assert len(more) == 2 and not {sw.trial_name(v) for v, _ in more} & {sw.trial_name(v) for v, _ in runs[0]}


def test_tpe_sweep_of_two_trials(swept, tmp_path):
  pytest.importorskip("optuna")
  config, root, result, _, _ = swept
  shutil.copytree(root, tmp_path / "tpe")  # the trials TPE proposes here are finished: read back, not trained
  steps = []
  out = sw.run_sweep(config, GRID, tmp_path / "tpe", tpe=2, seed=0, progress=False, verbose=False,
                     on_step=lambda *a: steps.append(a))
  data = json.loads((tmp_path / "tpe" / sw.SWEEP_JSON).read_text())
  assert data["mode"] == "tpe" and len(data["trials"]) == 2 and not steps
  assert sorted(t.name for t in out.trials) == sorted(t.name for t in result.trials)
  assert out.best.name == result.best.name
  again = sw.run_sweep(config, GRID, tmp_path / "tpe", tpe=2, seed=0, progress=False, verbose=False)
  assert [t.name for t in again.trials] == [t.name for t in out.trials]  # resumed: nothing new to propose


def test_tpe_without_optuna_is_one_line_naming_the_extra(monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, "optuna", None)
  c = tiny_config()
  c.methods = ("maml",)
  with pytest.raises(ConfigError, match=r"pip install metarec-jax\[sweep\]"):
    sw.run_sweep(c, ["optimizer.lr=log:1e-4:1e-2"], tmp_path / "t", tpe=2, verbose=False)


# --------------------------------------------------------------------------- the command line


def test_cli_sweep_prints_the_table_and_errors_are_one_line(swept, experiment_file, capsys):
  config, root, result, _, _ = swept
  assert main(["sweep", str(experiment_file), "--grid", GRID[0], "--workdir", str(root), "--no-progress"]) == 0
  out = capsys.readouterr().out
  assert "finished earlier" in out and "| **best** |" in out and f"{root}/sweep.md" in out
  assert f"--set train.steps={result.best.values['train.steps']}" in out
  assert main(["sweep", str(experiment_file), "--grid", "optimizer.lrr=1e-3", "--workdir", str(root)]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "did you mean 'optimizer.lr'" in err
  assert main(["sweep", str(experiment_file), "--grid", GRID[0], "--random", "0"]) == 2
  assert "--random 0: the number of trials must be >= 1" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    main(["sweep", "--help"])
  assert "(default: 0)" in capsys.readouterr().out  # --seed's default shown
