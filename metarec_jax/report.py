"""``metarec report``: merge workdirs into one table and plots.

The table is mean ± std over seeds per scenario, best per metric in bold.
Plots (PNG, matplotlib): MAE by scenario and method, and — when the runs
measured it (``eval.support_sizes``) — MAE against the number of support
ratings per method, one panel per scenario.
"""

from __future__ import annotations

import json
import pathlib
from collections import defaultdict

import numpy as np

from metarec_jax.results import markdown_table


def load_results(workdirs) -> dict:
  """Concatenates the rows (and support curves) of several workdirs' results.json."""
  rows, curves = [], []
  for wd in workdirs:
    path = pathlib.Path(wd) / "results.json"
    if not path.exists():
      raise FileNotFoundError(f"{path} does not exist: run `metarec run` into {wd} first")
    data = json.loads(path.read_text())
    rows.extend(data["rows"])
    curves.extend(data.get("support_curve", []))
  if not rows:
    raise ValueError(f"no result rows in {list(map(str, workdirs))}")
  return {"rows": rows, "support_curve": curves}


def _metrics(rows) -> tuple[str, ...]:
  keys = [k for k in rows[0] if k not in ("method", "scenario", "seed", "tasks", "support")]
  return tuple(keys)


def plot_mae_by_scenario(results: dict, path: pathlib.Path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  rows = results["rows"]
  methods = list(dict.fromkeys(r["method"] for r in rows))
  scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
  vals = defaultdict(list)
  for r in rows:
    vals[(r["method"], r["scenario"])].append(r["mae"])
  fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(scenarios) * len(methods) / 3), 4))
  width = 0.8 / len(methods)
  x = np.arange(len(scenarios))
  for i, m in enumerate(methods):
    means = [np.mean(vals[(m, s)]) if vals[(m, s)] else np.nan for s in scenarios]
    stds = [np.std(vals[(m, s)]) if vals[(m, s)] else 0 for s in scenarios]
    ax.bar(x + i * width - 0.4 + width / 2, means, width, yerr=stds, label=m)
  ax.set_xticks(x, scenarios)
  ax.set_ylabel("MAE (lower is better)")
  lo = np.nanmin([np.mean(v) for v in vals.values()])
  ax.set_ylim(lo * 0.9, None)
  ax.legend(fontsize=7, ncol=2)
  ax.set_title("MAE by scenario and method (mean ± std over seeds)")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_support_curve(results: dict, path: pathlib.Path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  curve = results["support_curve"]
  scenarios = list(dict.fromkeys(r["scenario"] for r in curve))
  methods = list(dict.fromkeys(r["method"] for r in curve))
  fig, axes = plt.subplots(1, len(scenarios), figsize=(4 * len(scenarios), 3.5), squeeze=False)
  for ax, s in zip(axes[0], scenarios):
    for m in methods:
      pts = defaultdict(list)
      for r in curve:
        if r["scenario"] == s and r["method"] == m:
          pts[r["support"]].append(r["mae"])
      ks = sorted(pts)
      ax.plot(ks, [np.mean(pts[k]) for k in ks], marker="o", label=m)
    ax.set_xscale("log")
    ax.set_xlabel("support ratings per user")
    ax.set_title(s)
  axes[0][0].set_ylabel("MAE")
  axes[0][-1].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def support_curve_table(results: dict) -> str:
  """Markdown: MAE (mean over seeds) per method and support size, one table per scenario."""
  curve = results["support_curve"]
  out = []
  for s in dict.fromkeys(r["scenario"] for r in curve):
    ks = sorted({r["support"] for r in curve if r["scenario"] == s})
    out.append(f"\n### MAE by support size: {s}\n")
    out.append("| method | " + " | ".join(f"K={k}" for k in ks) + " |")
    out.append("|---|" + "---|" * len(ks))
    for m in dict.fromkeys(r["method"] for r in curve):
      cells = []
      for k in ks:
        v = [r["mae"] for r in curve if r["scenario"] == s and r["method"] == m and r["support"] == k]
        cells.append(f"{np.mean(v):.4f}" if v else "")
      out.append(f"| {m} | " + " | ".join(cells) + " |")
  return "\n".join(out) + "\n"


def write_report(workdirs, out: str | pathlib.Path) -> list[pathlib.Path]:
  """Writes report.md and the PNG plots into ``out``; returns the files written."""
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  results = load_results(workdirs)
  metrics = _metrics(results["rows"])
  text = ["# metarec report\n", "Runs: " + ", ".join(f"`{w}`" for w in workdirs) + "\n",
          "Mean ± std over seeds; best per scenario and metric in bold.\n", markdown_table(results, metrics)]
  files = [out / "report.md", out / "mae_by_scenario.png"]
  plot_mae_by_scenario(results, files[1])
  text.append("\n![MAE by scenario](mae_by_scenario.png)\n")
  if results["support_curve"]:
    files.append(out / "mae_by_support_size.png")
    plot_support_curve(results, files[-1])
    text.append(support_curve_table(results))
    text.append("\n![MAE by support size](mae_by_support_size.png)\n")
  files[0].write_text("\n".join(text))
  return files
