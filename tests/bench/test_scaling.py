"""Scaling report: tables and plot from sweep results (no timing is run here)."""

from __future__ import annotations

import json

from metarec_jax.bench.scaling import markdown, update


def fake_results():
  row = lambda knob, v: {knob: v, "tasks_per_s": 1000.0 * v, "step_ms": 1.0, "compile_s": 2.0,
                         "gflops_per_s": 3.0, "flops_per_step": 1e6, "load_avg": [1.0, 1.0, 1.0]}
  tasks = [row("tasks", 8), row("tasks", 16) | {"torch_loop_tasks_per_s": 10.0, "torch_loop_speedup": 12.5}]
  return {"tasks": tasks, "inner_steps": [row("inner_steps", 1), row("inner_steps", 5)],
          "memory": [{"inner_steps": 1, "tasks": 256, "plain_mb": 10.0, "remat_mb": 8.0}]}


def test_markdown_has_a_table_per_sweep():
  md = markdown(fake_results())
  assert "## tasks/s against tasks per batch" in md and "## tasks/s against inner steps" in md
  assert "support size" not in md
  assert "| 16 | 16,000 |" in md and "10 (12.5×)" in md and "| 8 | 8,000 | 1.00 | 3.0 | 2.0 | – |" in md
  assert "| 1 | 10.0 | 8.0 |" in md


def test_update_merges_sweeps_and_writes_files(tmp_path):
  update(tmp_path, {"tasks": fake_results()["tasks"]})
  merged = update(tmp_path, {"memory": fake_results()["memory"]})
  assert set(merged) == {"tasks", "memory"}
  assert json.loads((tmp_path / "scaling.json").read_text()) == merged
  assert "Peak memory" in (tmp_path / "scaling.md").read_text()


def test_a_sweep_run_in_parts_merges_by_value(tmp_path):
  rows = fake_results()["tasks"]
  update(tmp_path, {"tasks": rows[1:]})
  replaced = dict(rows[1], tasks_per_s=1.0)
  merged = update(tmp_path, {"tasks": [rows[0], replaced]})
  assert [r["tasks"] for r in merged["tasks"]] == [8, 16]
  assert merged["tasks"][1]["tasks_per_s"] == 1.0
