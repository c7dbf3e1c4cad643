"""``metarec bench meta-step``: flags, the JSON contract, peers or the reason they are skipped."""

from __future__ import annotations

import dataclasses
import json

import pytest

from metarec_jax.bench import meta_step, torch_peers
from metarec_jax.bench.workload import make_workload
from metarec_jax.cli import build_parser, main
from tests.bench.tiny import tiny_spec


@pytest.fixture
def tiny_workloads(monkeypatch):
  """The command's workload, shrunk to tiny shapes (flags still set tasks, sizes, steps, learner)."""
  small = tiny_spec()
  keep = ("tasks", "support", "query", "inner_steps", "learner", "remat", "factored", "seed")

  def shrunk(spec):
    return make_workload(dataclasses.replace(small, **{k: getattr(spec, k) for k in keep}))

  monkeypatch.setattr(meta_step, "make_workload", shrunk)


def test_meta_step_flags_and_defaults():
  args = build_parser().parse_args(["bench", "meta-step"])
  assert (args.tasks, args.support, args.query, args.inner_steps, args.learner, args.json) == (
      32, 20, 10, 1, "maml", None)
  args = build_parser().parse_args(["bench", "meta-step", "--tasks", "64", "--support", "5", "--query", "7",
                                    "--inner-steps", "5", "--learner", "fomaml", "--json", "x.json"])
  assert (args.tasks, args.support, args.query, args.inner_steps, args.learner, args.json) == (
      64, 5, 7, 5, "fomaml", "x.json")


def test_meta_step_writes_the_json_contract(tiny_workloads, tmp_path, capsys):
  out = tmp_path / "r.json"
  assert main(["bench", "meta-step", "--tasks", "4", "--support", "5", "--query", "3", "--inner-steps", "2",
               "--repeats", "1", "--no-peers", "--json", str(out)]) == 0
  result = json.loads(out.read_text())
  assert {"tasks_per_s", "compile_s", "gflops_per_s", "workload"} <= set(result)
  assert result["tasks_per_s"] > 0 and result["compile_s"] > 0
  w = result["workload"]
  assert (w["tasks"], w["support"], w["query"], w["inner_steps"], w["learner"]) == (4, 5, 3, 2, "maml")
  assert result["peers"] == {}
  printed = capsys.readouterr().out
  assert "tasks/s" in printed and json.loads(printed[printed.index("{"):]) == result
  # "auto": the tiny layers are narrower than the sets, so the step keeps per-task kernels and has no plain row.
  assert w["factored"] == "auto" and w["uses_factored"] is False and "plain" not in result


def test_factored_step_is_timed_beside_per_task_kernels(tiny_workloads, tmp_path, capsys):
  out = tmp_path / "r.json"
  assert main(["bench", "meta-step", "--tasks", "4", "--repeats", "1", "--no-peers", "--factored", "on",
               "--json", str(out)]) == 0
  result = json.loads(out.read_text())
  assert result["workload"]["factored"] == "on" and result["workload"]["uses_factored"] is True
  assert result["plain"]["tasks_per_s"] > 0 and result["plain"]["factored_speedup"] > 0
  assert "jax plain" in capsys.readouterr().out


def test_bad_flags_are_refused(capsys):
  assert main(["bench", "meta-step", "--tasks", "0"]) == 2
  assert "--tasks must be >= 1" in capsys.readouterr().err


def test_peers_are_skipped_with_the_reason_without_torch(tiny_workloads, monkeypatch):
  monkeypatch.setattr(torch_peers, "torch_available", lambda: False)
  result = meta_step.bench_meta_step(tiny_spec(), repeats=1, target_s=0.01, chunks=(2, 3))
  assert result["peers"] == {} and ".[bench]" in result["peers_skipped"]
  assert set(result["chunked"]) == {"2"} and result["chunked"]["2"]["tasks_per_s"] > 0  # 3 does not divide 4


def test_peers_run_beside_jax_when_torch_is_installed(tiny_workloads):
  pytest.importorskip("torch", reason='PyTorch is not installed (pip install -e ".[bench]")')
  result = meta_step.bench_meta_step(tiny_spec(factored="on"), repeats=1, target_s=0.01)
  assert set(result["peers"]) == {"torch_loop", "torch_func"}
  for peer in result["peers"].values():
    assert peer["tasks_per_s"] > 0 and peer["jax_speedup"] > 0 and peer["threads"] >= 1
    assert peer["plain_jax_speedup"] > 0
  assert "peers_skipped" not in result
  assert "jax is" in meta_step.summary(result)
