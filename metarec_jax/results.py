"""Results: ``results.json`` rows and the mean ± std markdown tables.

Every ± is the sample standard deviation over seeds (``ddof=1``); a table
over one seed shows the mean alone. Each table says which under it.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

LOWER_IS_BETTER = ("mae", "rmse", "logloss")


def seed_std(values) -> float:
  """The sample standard deviation over seeds (``ddof=1``); nan for one seed."""
  values = np.asarray(values, np.float64)
  return float(values.std(ddof=1)) if len(values) > 1 else float("nan")


def mean_std_cell(values, bold: bool = False) -> str:
  """``mean ± std`` over seeds (the mean alone for one seed), four decimals."""
  values = np.asarray(values, np.float64)
  cell = f"{values.mean():.4f}" if len(values) < 2 else f"{values.mean():.4f} ± {seed_std(values):.4f}"
  return f"**{cell}**" if bold else cell


def std_note(n_seeds: int) -> str:
  """The line under a table that says what its ± is."""
  if n_seeds < 2:
    return "One seed: the mean alone, no spread."
  return f"± is the sample standard deviation over {n_seeds} seeds (ddof=1)."


def aggregate(results: dict, metrics) -> dict[str, dict[str, dict[str, tuple[float, float, int]]]]:
  """scenario -> method -> metric -> (mean, sample std over seeds, number of seeds)."""
  table: dict = defaultdict(lambda: defaultdict(dict))
  groups = defaultdict(list)
  for r in results["rows"]:
    groups[(r["scenario"], r["method"])].append(r)
  for (scenario, method), rs in groups.items():
    for m in list(metrics) + ["tasks"]:
      vals = np.array([r[m] for r in rs], dtype=np.float64)
      table[scenario][method][m] = (float(vals.mean()), seed_std(vals), len(vals))
  return table


def markdown_table(results: dict, metrics, scenarios=None) -> str:
  """One table per scenario: methods × metrics, mean ± std over seeds, best in bold."""
  groups = defaultdict(list)
  for r in results["rows"]:
    groups[(r["scenario"], r["method"])].append(r)
  order = list(dict.fromkeys(r["method"] for r in results["rows"]))
  scen = scenarios or list(dict.fromkeys(r["scenario"] for r in results["rows"]))
  lines = []
  for s in scen:
    methods = [m for m in order if (s, m) in groups]
    if not methods:
      continue
    n_seeds = max(len(groups[(s, m)]) for m in methods)
    tasks = int(np.mean([r["tasks"] for r in groups[(s, methods[0])]]))
    lines.append(f"\n### {s} ({tasks} tasks, {n_seeds} seed(s))\n")
    lines.append("| method | " + " | ".join(metrics) + " |")
    lines.append("|---|" + "---|" * len(metrics))
    means = {(k, m): float(np.mean([r[m] for r in groups[(s, k)]])) for k in methods for m in metrics}
    best = {m: (min if m in LOWER_IS_BETTER else max)(means[(k, m)] for k in methods) for m in metrics}
    for k in methods:
      cells = [mean_std_cell([r[m] for r in groups[(s, k)]], bold=means[(k, m)] == best[m]) for m in metrics]
      lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines.append(f"\n{std_note(n_seeds)}")
  return "\n".join(lines).lstrip("\n") + "\n"


def results_markdown(results: dict, config) -> str:
  """The text of ``results.md``: a header, the candidates (implicit feedback), a table per scenario,
  and the support-size curve's tables when the run scored one (`eval.support_sizes`)."""
  n_seeds = len({r["seed"] for r in results["rows"]})
  spread = "Mean over seeds, ± the sample std (ddof=1)" if n_seeds > 1 else "One seed (no ± column)"
  header = f"# {config.name}\n\n{spread}; best per scenario and metric in bold.\n\n"
  if config.data.feedback == "implicit":
    from metarec_jax.eval.implicit import describe_candidates
    header += describe_candidates(config) + "\n\n"
  scenarios = list(config.eval.scenarios)
  scenarios += [s for s in dict.fromkeys(r["scenario"] for r in results["rows"]) if s not in scenarios]
  text = header + markdown_table(results, tuple(config.eval.metrics), scenarios)
  if results.get("support_curve"):
    from metarec_jax.report import support_curve_table  # report imports this module
    text += "\n" + support_curve_table(results)
  return text
