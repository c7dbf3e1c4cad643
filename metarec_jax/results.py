"""Results: ``results.json`` rows and the mean ± std markdown table."""

from __future__ import annotations

import json
import pathlib
from collections import defaultdict

import numpy as np

LOWER_IS_BETTER = ("mae", "rmse", "logloss")


def aggregate(results: dict, metrics) -> dict[str, dict[str, dict[str, tuple[float, float, int]]]]:
  """scenario -> method -> metric -> (mean, std over seeds, number of seeds)."""
  table: dict = defaultdict(lambda: defaultdict(dict))
  groups = defaultdict(list)
  for r in results["rows"]:
    groups[(r["scenario"], r["method"])].append(r)
  for (scenario, method), rs in groups.items():
    for m in list(metrics) + ["tasks"]:
      vals = np.array([r[m] for r in rs], dtype=np.float64)
      table[scenario][method][m] = (float(vals.mean()), float(vals.std()), len(vals))
  return table


def markdown_table(results: dict, metrics, scenarios=None) -> str:
  """One table per scenario: methods × metrics, mean ± std over seeds, best in bold."""
  table = aggregate(results, metrics)
  order = list(dict.fromkeys(r["method"] for r in results["rows"]))
  scen = scenarios or list(dict.fromkeys(r["scenario"] for r in results["rows"]))
  lines = []
  for s in scen:
    if s not in table:
      continue
    methods = [m for m in order if m in table[s]]
    n_seeds = max(table[s][m][metrics[0]][2] for m in methods)
    lines.append(f"\n### {s} ({int(table[s][methods[0]]['tasks'][0])} tasks, {n_seeds} seed(s))\n")
    lines.append("| method | " + " | ".join(metrics) + " |")
    lines.append("|---|" + "---|" * len(metrics))
    best = {}
    for m in metrics:
      vals = [table[s][k][m][0] for k in methods]
      best[m] = min(vals) if m in LOWER_IS_BETTER else max(vals)
    for k in methods:
      cells = []
      for m in metrics:
        mean, std, _ = table[s][k][m]
        cell = f"{mean:.4f} ± {std:.4f}"
        cells.append(f"**{cell}**" if mean == best[m] else cell)
      lines.append(f"| {k} | " + " | ".join(cells) + " |")
  return "\n".join(lines).lstrip("\n") + "\n"


def write_results(workdir: pathlib.Path, results: dict, config) -> None:
  """Writes ``results.json`` and ``results.md`` into the workdir."""
  workdir = pathlib.Path(workdir)
  (workdir / "results.json").write_text(json.dumps(results, indent=1))
  header = f"# {config.name}\n\nmean ± std over seeds; best per scenario and metric in bold.\n\n"
  if config.data.get("feedback", "rating") == "implicit":
    from metarec_jax.eval.implicit import describe_candidates
    header += describe_candidates(config) + "\n\n"
  scenarios = list(config.eval.scenarios)
  scenarios += [s for s in dict.fromkeys(r["scenario"] for r in results["rows"]) if s not in scenarios]
  (workdir / "results.md").write_text(header + markdown_table(results, tuple(config.eval.metrics), scenarios))
