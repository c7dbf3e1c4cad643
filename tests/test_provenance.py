"""env.json: versions, devices, git, command, sessions, and the time of each method x seed; a resume appends."""

from __future__ import annotations

import datetime
import json
import re
import sys

import pytest

from metarec_jax import experiment
from metarec_jax.runlog import PACKAGES, git_info
from tests.conftest import tiny_config

SHA = "0123456789abcdef0123456789abcdef01234567"


class Killed(Exception):
  pass


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  """A tiny run killed during maml's training, then resumed: env.json after each session."""
  c = tiny_config()
  c.methods = ("global_mean", "maml")
  c.eval.scenarios = ("user_cold",)
  wd = tmp_path_factory.mktemp("provenance") / "wd"

  def kill_at_step_6(name, seed, step):
    if step == 6:
      raise Killed

  with pytest.raises(Killed):
    experiment.run(c, wd, progress=False, verbose=False, on_step=kill_at_step_6)
  first = json.loads((wd / "env.json").read_text())
  experiment.run(c, wd, progress=False, verbose=False)
  return first, json.loads((wd / "env.json").read_text())


def _time(text: str) -> datetime.datetime:
  t = datetime.datetime.fromisoformat(text)
  assert t.tzinfo is not None
  return t


def test_env_json_keys_and_types(env):
  _, e = env
  assert set(PACKAGES) | {"python"} == set(e["packages"])
  assert all(isinstance(v, str) for v in e["packages"].values())  # all installed here
  j = e["jax"]
  assert isinstance(j["backend"], str) and isinstance(j["process_count"], int) and j["process_count"] >= 1
  assert j["devices"] and all(isinstance(d["kind"], str) and isinstance(d["count"], int) for d in j["devices"])
  assert sum(d["count"] for d in j["devices"]) == j["device_count"]
  assert e["command"] == sys.argv
  assert set(e["git"]) == {"package", "cwd"}
  for repo in e["git"].values():
    if repo is not None:
      assert re.fullmatch(r"[0-9a-f]{40}", repo["commit"]) and repo["dirty"] in (True, False, None)
  for s in e["sessions"]:
    assert {"start", "end", "wall_s", "status", "mode", "command", "cwd", "packages", "jax", "git"} <= set(s)


def test_sessions_append_on_resume(env):
  first, e = env
  assert [s["status"] for s in first["sessions"]] == ["failed"]
  assert first["sessions"][0]["error"].startswith("Killed")
  assert [s["status"] for s in e["sessions"]] == ["failed", "finished"]
  assert e["sessions"][0] == first["sessions"][0]  # history kept
  for s in e["sessions"]:
    assert _time(s["start"]) <= _time(s["end"]) and s["wall_s"] > 0 and s["mode"] == "run"
  assert _time(e["sessions"][0]["end"]) <= _time(e["sessions"][1]["start"])


def test_each_method_and_seed_timed_once_and_kept_on_resume(env):
  first, e = env
  assert set(first["methods"]) == {"global_mean__seed0"}  # maml was killed: no time
  assert set(e["methods"]) == {"global_mean__seed0", "maml__seed0"}
  assert e["methods"]["global_mean__seed0"] == first["methods"]["global_mean__seed0"]  # finished earlier: kept
  maml = e["methods"]["maml__seed0"]
  assert maml["session"] == 1 and maml["method"] == "maml" and maml["seed"] == 0
  assert isinstance(maml["wall_s"], float) and maml["wall_s"] > 0
  assert _time(e["sessions"][1]["start"]) <= _time(maml["start"]) <= _time(maml["end"])


def test_git_commit_read_from_files(tmp_path):
  repo = tmp_path / "repo"
  (repo / ".git" / "refs" / "heads").mkdir(parents=True)
  (repo / "sub").mkdir()
  (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
  (repo / ".git" / "refs" / "heads" / "main").write_text(SHA + "\n")
  got = git_info(repo / "sub")
  assert got["root"] == str(repo) and got["commit"] == SHA and got["branch"] == "main"
  (repo / ".git" / "refs" / "heads" / "main").unlink()  # packed
  (repo / ".git" / "packed-refs").write_text(f"# pack-refs with: peeled\n{SHA} refs/heads/main\n")
  assert git_info(repo)["commit"] == SHA
  (repo / ".git" / "HEAD").write_text(SHA[::-1] + "\n")  # detached
  assert git_info(repo)["commit"] == SHA[::-1] and git_info(repo)["branch"] is None
  worktree = tmp_path / "worktree"
  (repo / ".git" / "worktrees" / "w").mkdir(parents=True)
  (repo / ".git" / "worktrees" / "w" / "HEAD").write_text("ref: refs/heads/main\n")
  (repo / ".git" / "worktrees" / "w" / "commondir").write_text("../..\n")
  worktree.mkdir()
  (worktree / ".git").write_text(f"gitdir: {repo / '.git' / 'worktrees' / 'w'}\n")
  assert git_info(worktree)["commit"] == SHA
  assert git_info(tmp_path / "elsewhere") is None or git_info(tmp_path / "elsewhere")["root"] != str(tmp_path)
