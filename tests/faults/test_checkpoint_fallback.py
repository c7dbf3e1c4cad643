"""A damaged latest checkpoint: the run says so, resumes from the one before, and finishes with the same results."""

from __future__ import annotations

import pathlib

import pytest

from metarec_jax import experiment
from metarec_jax.train.loop import KEEP, CheckpointError
from tests.conftest import tiny_config


class Killed(Exception):
  pass


def _kill_at(step_to_kill):
  def hook(name, seed, step):
    if step == step_to_kill:
      raise Killed
  return hook


def _damage(step_dir: pathlib.Path) -> list[pathlib.Path]:
  """Truncates every array data file of an orbax step (the OCDBT ``d/`` files) to half, then garbles the rest."""
  files = [p for p in step_dir.rglob("*") if p.is_file() and p.parent.name == "d"]
  assert files, sorted(str(p.relative_to(step_dir)) for p in step_dir.rglob("*"))
  for p in files:
    data = p.read_bytes()
    p.write_bytes(bytes(b ^ 0xFF for b in data[: len(data) // 2]))
  return files


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
  c = tiny_config()
  c.methods = ("maml",)
  return c, experiment.run(c, tmp_path_factory.mktemp("straight") / "wd", progress=False, verbose=False)


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(straight, tmp_path, capsys):
  c, reference = straight
  wd = tmp_path / "wd"
  with pytest.raises(Killed):  # checkpoints every 4 of 12 steps: steps 4 and 8 on disk
    experiment.run(c, wd, progress=False, verbose=False, on_step=_kill_at(10))
  ckpt = wd / "checkpoints" / "maml__seed0"
  assert sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit()) == [4, 8] and KEEP == 2
  _damage(ckpt / "8")
  capsys.readouterr()
  resumed = experiment.run(c, wd, progress=False, verbose=False)
  out = capsys.readouterr().out
  assert f"checkpoint step 8 in {ckpt} does not restore" in out
  assert f"resuming from checkpoint step 4 in {ckpt}" in out
  assert resumed["rows"] == reference["rows"]  # the batch key folds in the step: resuming earlier is deterministic
  assert "Traceback" not in out


def test_no_restorable_checkpoint_is_a_clear_error_not_a_fresh_start(straight, tmp_path):
  c, _ = straight
  wd = tmp_path / "wd"
  with pytest.raises(Killed):
    experiment.run(c, wd, progress=False, verbose=False, on_step=_kill_at(10))
  ckpt = wd / "checkpoints" / "maml__seed0"
  for step in ("4", "8"):
    _damage(ckpt / step)
  started = []
  with pytest.raises(CheckpointError, match=rf"maml seed 0: no checkpoint in {ckpt} restores \(steps 8, 4: .*delete"):
    experiment.run(c, wd, progress=False, verbose=False, on_step=lambda *a: started.append(a))
  assert not started  # nothing trained from scratch
  assert not (wd / "lock").exists()  # released on failure
  assert str(CheckpointError("x").__class__.__mro__[1].__name__) == "ValueError"  # the CLI prints it in one line
