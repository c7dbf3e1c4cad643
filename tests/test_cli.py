"""The metarec command line on a tiny experiment file."""

from __future__ import annotations

import json
import pathlib

from metarec_jax.cli import main

EXPERIMENT = '''
"""Tiny experiment for the CLI tests."""
from metarec_jax import default_config

def get_config():
  c = default_config()
  c.name = "cli"
  c.methods = ("global_mean", "maml")
  c.data.synthetic.update(dict(num_users=160, num_items=120, latent_dim=3, min_ratings=14, max_ratings=20))
  c.model.embed_dim = 4
  c.model.head_hidden = (8,)
  c.train.steps = 4
  c.train.tasks_per_batch = 8
  c.train.eval_every = 2
  c.eval.tasks_per_chunk = 64
  return c
'''


def test_run_then_eval(tmp_path, capsys):
  exp = tmp_path / "tiny.py"
  exp.write_text(EXPERIMENT)
  wd = tmp_path / "wd"
  assert main(["run", str(exp), "--workdir", str(wd), "--set", "meta.inner_lr=0.05", "--seeds", "2",
               "--no-progress"]) == 0
  rows = json.loads((wd / "results.json").read_text())["rows"]
  assert {r["seed"] for r in rows} == {0, 1}
  assert json.loads((wd / "config.json").read_text())["meta"]["inner_lr"] == 0.05
  out = capsys.readouterr().out
  assert "user_cold" in out and "maml" in out
  assert main(["eval", str(wd), "--no-progress"]) == 0
  assert json.loads((wd / "results.json").read_text())["rows"] == rows


def test_errors_are_one_clear_line(tmp_path, capsys):
  exp = tmp_path / "tiny.py"
  exp.write_text(EXPERIMENT)
  assert main(["run", str(exp), "--set", "meta.nope=1"]) == 2
  err = capsys.readouterr().err
  assert "unknown key 'meta.nope'" in err and "meta.inner_lr" in err
  assert main(["run", str(exp), "--set", "optimizer.lr=-1", "--workdir", str(tmp_path / "x")]) == 2
  assert "optimizer.lr must be > 0" in capsys.readouterr().err
  assert not (tmp_path / "x").exists()  # refused before anything was written
  bad = tmp_path / "bad.py"
  bad.write_text("pass\n")
  assert main(["run", str(bad)]) == 2
  assert "no get_config" in capsys.readouterr().err
  assert main(["eval", str(tmp_path / "nowhere")]) == 2
  assert "not a metarec workdir" in capsys.readouterr().err


def test_mistyped_keys_methods_and_files_get_a_suggestion(tmp_path, capsys):
  exp = tmp_path / "tiny.py"
  exp.write_text(EXPERIMENT)
  assert main(["run", str(exp), "--set", "train.step=3"]) == 2
  err = capsys.readouterr().err
  assert "unknown key 'train.step'; did you mean 'train.steps'?" in err and "train.log_every" not in err
  assert main(["run", str(exp), "--set", "methods=mamll", "--workdir", str(tmp_path / "m")]) == 2
  assert "unknown method 'mamll'; did you mean 'maml'?" in capsys.readouterr().err
  assert main(["run", str(tmp_path / "tinyy.py")]) == 2
  assert f"did you mean '{exp}'?" in capsys.readouterr().err


def test_version_and_defaults_in_help(capsys):
  import jax
  import pytest

  import metarec_jax
  with pytest.raises(SystemExit) as e:
    main(["--version"])
  assert e.value.code == 0
  assert capsys.readouterr().out.startswith(f"metarec-jax {metarec_jax.__version__} (jax {jax.__version__}")
  with pytest.raises(SystemExit):
    main(["bench", "serving", "--help"])
  out = " ".join(capsys.readouterr().out.split())
  assert "(default 300)" in out and "(default: 300)" not in out  # a default the text states is not repeated
  with pytest.raises(SystemExit):
    main(["data", "info", "--help"])
  assert "hold-outs (default: 0)" in " ".join(capsys.readouterr().out.split())


def test_config_prints_the_resolved_config_without_running(tmp_path, capsys):
  exp = tmp_path / "tiny.py"
  exp.write_text(EXPERIMENT)
  assert main(["config", str(exp), "--set", "train.steps=7"]) == 0
  lines = capsys.readouterr().out.splitlines()
  assert "train.steps = 7" in lines and "methods = ('global_mean', 'maml')" in lines
  assert main(["config", str(exp), "--json"]) == 0
  assert json.loads(capsys.readouterr().out)["train"]["steps"] == 4
  assert main(["config", str(exp), "--set", "optimizer.lr=-1"]) == 2  # validated like a run
  assert "optimizer.lr must be > 0" in capsys.readouterr().err
  assert not any(p.name != "tiny.py" for p in tmp_path.iterdir())  # nothing written


def test_ctrl_c_is_one_line_saying_how_to_resume(tmp_path, capsys, monkeypatch):
  from metarec_jax import experiment

  def interrupt(*args, **kwargs):
    raise KeyboardInterrupt

  monkeypatch.setattr(experiment, "run", interrupt)
  exp = tmp_path / "tiny.py"
  exp.write_text(EXPERIMENT)
  assert main(["run", str(exp), "--workdir", str(tmp_path / "wd"), "--no-progress"]) == 130
  err = capsys.readouterr().err
  assert "Traceback" not in err and err.count("\n") == 1
  assert "interrupted" in err and f"`metarec run {exp} --workdir {tmp_path / 'wd'} --no-progress` resumes" in err
