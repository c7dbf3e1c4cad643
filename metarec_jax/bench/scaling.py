"""Scaling sweeps of the meta-train step: throughput and memory against the workload's knobs.

* tasks/s against tasks per batch (8 … 1024), support size (5 … 100) and
  inner steps (1, 5, 10), each point a `bench_meta_step` run (own compile,
  warm-up, interleaved repeats, median);
* peak memory against inner steps, with and without rematerialisation of the
  inner steps: XLA's buffer assignment for the compiled step (arguments +
  outputs + temporaries - donated aliases), so no run is needed.

Results are kept in one JSON file, so sweeps can run one at a time; the
markdown tables and the PNG plot are redrawn from all sweeps present.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Callable

from metarec_jax.bench.jax_step import JaxMetaStep
from metarec_jax.bench.meta_step import bench_meta_step
from metarec_jax.bench.workload import WorkloadSpec, make_workload

THROUGHPUT = {
    "tasks": (8, 16, 32, 64, 128, 256, 512, 1024),
    "support": (5, 10, 20, 50, 100),
    "inner_steps": (1, 5, 10),
}
MEMORY_STEPS = (1, 5, 10)
SWEEPS = tuple(THROUGHPUT) + ("memory",)
TITLES = {"tasks": "tasks per batch", "support": "support size", "inner_steps": "inner steps"}
COLORS = {"jax": "tab:blue", "torch_loop": "tab:orange", "torch_func": "tab:green"}


def throughput_sweep(knob: str, base: WorkloadSpec, *, values: tuple[int, ...] = (), repeats: int = 3,
                     peers: bool = False, peer_max_tasks: int = 256, chunk: int = 128,
                     log: Callable[[str], None] = print) -> list[dict[str, Any]]:
  """tasks/s of the JAX step (and the peers, up to ``peer_max_tasks`` tasks) along one knob.

  ``values`` defaults to the knob's values in `THROUGHPUT`. Batches larger
  than ``chunk`` tasks are also timed with ``tasks_per_chunk=chunk``.
  """
  rows = []
  for value in values or THROUGHPUT[knob]:
    spec = dataclasses.replace(base, **{knob: value})
    with_peers = peers and spec.tasks <= peer_max_tasks
    r = bench_meta_step(spec, repeats=repeats, peers=with_peers, target_s=0.2, chunks=(chunk,) if chunk else (),
                        plain=False)
    row = {knob: value, "tasks_per_s": r["tasks_per_s"], "step_ms": r["step_ms"], "compile_s": r["compile_s"],
           "gflops_per_s": r["gflops_per_s"], "flops_per_step": r["flops_per_step"],
           "load_avg": r["machine"]["load_avg_after"]}
    for c, v in r.get("chunked", {}).items():
      row["chunk"] = int(c)
      row["chunked_tasks_per_s"] = v["tasks_per_s"]
    for name, p in r["peers"].items():
      row[f"{name}_tasks_per_s"] = p["tasks_per_s"]
      row[f"{name}_speedup"] = p["jax_speedup"]
    chunked = f" (chunks of {row['chunk']}: {row['chunked_tasks_per_s']:,.0f})" if "chunk" in row else ""
    log(f"  {knob}={value}: {row['tasks_per_s']:,.0f} tasks/s{chunked}" + "".join(
        f", {n} {p['tasks_per_s']:,.0f} ({p['jax_speedup']:.1f}x)" for n, p in r["peers"].items()))
    rows.append(row)
  return rows


def memory_sweep(base: WorkloadSpec, values: tuple[int, ...] = (),
                 log: Callable[[str], None] = print) -> list[dict[str, Any]]:
  """XLA's peak memory of the compiled step against inner steps, without and with remat."""
  rows = []
  for steps in values or MEMORY_STEPS:
    row: dict[str, Any] = {"inner_steps": steps, "tasks": base.tasks}
    for remat in (False, True):
      step = JaxMetaStep(make_workload(dataclasses.replace(base, inner_steps=steps, remat=remat)))
      step.compile()
      key = "remat" if remat else "plain"
      row[f"{key}_mb"] = step.peak_mb
    log(f"  inner_steps={steps}: {row['plain_mb']:.1f} MB plain, {row['remat_mb']:.1f} MB remat")
    rows.append(row)
  return rows


def _fmt(x, spec=",.0f"):
  return "–" if x is None else format(x, spec)


def markdown(results: dict[str, Any]) -> str:
  """Markdown tables of every sweep in ``results``."""
  out = ["# Meta-train step scaling (MeLU-shaped workload)", ""]
  meta = results.get("meta", {})
  if meta:
    out += [f"Machine: {meta.get('machine')}; base workload: {meta.get('base')}.", ""]
  for knob in THROUGHPUT:
    rows = results.get(knob)
    if not rows:
      continue
    peers = [p for p in ("torch_loop", "torch_func") if any(f"{p}_tasks_per_s" in r for r in rows)]
    chunks = sorted({r["chunk"] for r in rows if "chunk" in r})
    head = [TITLES[knob], "JAX tasks/s", "ms/step", "GFLOP/s", "compile s"]
    head += [f"JAX, chunks of {c}" for c in chunks[:1]]
    head += [f"{p} tasks/s (JAX ×)" for p in peers]
    out += [f"## tasks/s against {TITLES[knob]}", "", "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head)]
    for r in rows:
      cells = [str(r[knob]), _fmt(r["tasks_per_s"]), _fmt(r["step_ms"], ".2f"), _fmt(r["gflops_per_s"], ".1f"),
               _fmt(r["compile_s"], ".1f")]
      if chunks:
        cells.append(_fmt(r.get("chunked_tasks_per_s")))
      for p in peers:
        t = r.get(f"{p}_tasks_per_s")
        cells.append("–" if t is None else f"{t:,.0f} ({r[f'{p}_speedup']:.1f}×)")
      out.append("| " + " | ".join(cells) + " |")
    out.append("")
  rows = results.get("memory")
  if rows:
    out += [f"## Peak memory against inner steps ({rows[0]['tasks']} tasks; XLA buffer assignment)", "",
            "| inner steps | plain MB | remat MB |", "|---|---|---|"]
    out += [f"| {r['inner_steps']} | {_fmt(r['plain_mb'], '.1f')} | {_fmt(r['remat_mb'], '.1f')} |" for r in rows]
    out.append("")
  return "\n".join(out)


def plot(results: dict[str, Any], path: pathlib.Path) -> bool:
  """Draws the sweeps into one PNG; False when matplotlib is not installed."""
  try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    return False
  panels = [k for k in SWEEPS if results.get(k)]
  if not panels:
    return False
  fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
  for ax, knob in zip(axes[0], panels):
    rows = results[knob]
    if knob == "memory":
      x = [r["inner_steps"] for r in rows]
      ax.plot(x, [r["plain_mb"] for r in rows], "o-", color=COLORS["jax"], label="plain")
      ax.plot(x, [r["remat_mb"] for r in rows], "o:", color=COLORS["jax"], alpha=0.6, label="remat")
      ax.set_xlabel("inner steps")
      ax.set_ylabel("peak memory (MB)")
      ax.set_title(f"memory, {rows[0]['tasks']} tasks")
    else:
      x = [r[knob] for r in rows]
      ax.plot(x, [r["tasks_per_s"] for r in rows], "o-", color=COLORS["jax"], label="JAX")
      pts = [(r[knob], r["chunked_tasks_per_s"]) for r in rows if "chunked_tasks_per_s" in r]
      if pts:
        ax.plot(*zip(*pts), "o:", color=COLORS["jax"], alpha=0.6, label=f"JAX, chunks of {rows[-1].get('chunk', '')}")
      for peer in ("torch_loop", "torch_func"):
        pts = [(r[knob], r[f"{peer}_tasks_per_s"]) for r in rows if f"{peer}_tasks_per_s" in r]
        if pts:
          ax.plot(*zip(*pts), "s--", color=COLORS[peer], label=peer)
      ax.set_xlabel(TITLES[knob])
      ax.set_ylabel("tasks/s")
      ax.set_yscale("log")
      if knob == "tasks":
        ax.set_xscale("log", base=2)
      ax.set_title(f"tasks/s vs {TITLES[knob]}")
    ax.grid(True, alpha=0.3)
    ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return True


def update(out_dir: pathlib.Path, new: dict[str, Any]) -> dict[str, Any]:
  """Merges ``new`` sweeps into ``out_dir/scaling.json``; redraws scaling.md and scaling.png.

  Rows of a sweep already in the file are kept unless ``new`` has a row for
  the same value, so a sweep can be run in parts.
  """
  out_dir.mkdir(parents=True, exist_ok=True)
  path = out_dir / "scaling.json"
  results = json.loads(path.read_text()) if path.exists() else {}
  for sweep, rows in new.items():
    if sweep in SWEEPS and results.get(sweep):  # merge by the swept value, new rows win
      knob = "inner_steps" if sweep == "memory" else sweep
      merged = {r[knob]: r for r in results[sweep]}
      merged.update({r[knob]: r for r in rows})
      rows = [merged[k] for k in sorted(merged)]
    results[sweep] = rows
  path.write_text(json.dumps(results, indent=1) + "\n")
  (out_dir / "scaling.md").write_text(markdown(results))
  plot(results, out_dir / "scaling.png")
  return results
