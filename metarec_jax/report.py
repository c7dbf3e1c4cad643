"""``metarec report``: merge workdirs into one table and plots.

The report opens with an MAE overview (methods × scenarios) and the
validation-selected configuration: per seed, the one method whose mean
validation MAE over the scenarios' validation sets is lowest, reported in
every scenario — the number a researcher who may only look at validation
users would publish. Then one table per scenario (mean ± sample std over
seeds, ddof=1, best per metric in bold). A method that two run folders hold
with different settings gets one row per setting, labelled with the keys
that differ; the same method, seed and settings in two folders is counted
once. Plots (PNG, matplotlib): MAE by scenario and method, and — when the runs
measured it (``eval.support_sizes``) — MAE against the number of support
ratings per method, one panel per scenario, and one table per scenario and
way of choosing the support ratings (``eval.support_choice``: random,
popularity, evidence; rows without a choice are random).
"""

from __future__ import annotations

import pathlib
from collections import defaultdict

import numpy as np

from metarec_jax import config as cfg_lib
from metarec_jax.config import EVAL_ONLY_KEYS
from metarec_jax.methods import resolve_all
from metarec_jax.results import markdown_table, mean_std_cell, seed_std, std_note
from metarec_jax.rundir import RunDir


# Keys that do not change a row's numbers: which seeds and methods a run holds, its name, what is scored.
NOT_SETTINGS = ("name", "seed", "num_seeds", "methods", "variants") + EVAL_ONLY_KEYS


def _setting(value) -> str:
  if isinstance(value, (tuple, list)):
    return ",".join(map(str, value))
  return str(value)


def method_settings(run: RunDir) -> dict[str, dict[str, str]]:
  """Method -> the config keys its numbers depend on, with their values (as text)."""
  out = {}
  for method in resolve_all(run.config):
    flat = cfg_lib.flat_keys(method.config)
    out[method.name] = {k: _setting(v) for k, v in flat.items() if k not in NOT_SETTINGS and method.reads_key(k)}
  return out


def row_labels(runs: list[RunDir]) -> list[dict[str, str]]:
  """Per run: method -> its row label in the merged tables.

  A method that several runs hold with different settings is labelled with
  the keys that differ (``maml [meta.inner_lr=0.5]``), so rows of different
  settings are never averaged as if they were seeds.
  """
  settings = [method_settings(run) for run in runs]
  labels: list[dict[str, str]] = [{} for _ in runs]
  for method in dict.fromkeys(m for s in settings for m in s):
    held = [(i, s[method]) for i, s in enumerate(settings) if method in s]
    distinct = {tuple(sorted(v.items())) for _, v in held}
    differing = sorted({k for _, v in held for k in v if len({w.get(k) for _, w in held}) > 1})
    for i, values in held:
      labels[i][method] = method if len(distinct) == 1 else (
          f"{method} [" + ", ".join(f"{k}={values.get(k, '<absent>')}" for k in differing) + "]")
  return labels


def open_runs(workdirs) -> list[RunDir]:
  """The run folders (each must hold a finished run)."""
  runs = [RunDir.open(wd) for wd in workdirs]
  for run in runs:
    run.read_results()  # a clear error for a run that has not finished
  return runs


def load_results(workdirs) -> dict:
  """The rows (and support curves) of several run folders, each row labelled by its method's settings.

  The same method, seed and settings in two folders is one experiment: its
  rows are kept once when they agree.

  Raises:
    FileNotFoundError: a folder holds no finished run.
    ValueError: two folders hold the same method, seed and settings with
      different numbers, or there are no rows.
  """
  runs = open_runs(workdirs)
  rows, curves, seen = [], [], {}
  for run, label in zip(runs, row_labels(runs)):
    data = run.read_results()
    fresh = set()
    for r in data["rows"]:
      row = {**r, "method": label.get(r["method"], r["method"])}
      key = (row["method"], row["seed"], row["scenario"])
      if key in seen:
        where, earlier = seen[key]
        if earlier != row:
          raise ValueError(f"{where} and {run.path} both hold {key[0]} seed {key[1]} ({key[2]}) with the same "
                           "settings but different numbers (runs from different versions?); pass one of them")
        continue
      seen[key] = (run.path, row)
      fresh.add((row["method"], row["seed"]))
      rows.append(row)
    curves.extend({**r, "method": label.get(r["method"], r["method"])} for r in data.get("support_curve", [])
                  if (label.get(r["method"], r["method"]), r["seed"]) in fresh)
  if not rows:
    raise ValueError(f"no result rows in {list(map(str, workdirs))}")
  return {"rows": rows, "support_curve": curves}


def load_selections(workdirs) -> list[dict]:
  """``{"method", "seed", "selection", "selected_on"}`` of every finished part in the run folders.

  ``selection`` maps each validation set (``valid``, ``valid_<scenario>``) to
  what was chosen on it, with its ``val_mae``; ``method`` is the row label
  of `load_results`.
  """
  runs = open_runs(workdirs)
  out, seen = [], set()
  for run, label in zip(runs, row_labels(runs)):
    for data in run.parts():
      if not data.get("rows") or not data.get("selection"):
        continue
      first = data["rows"][0]
      method = label.get(first["method"], first["method"])
      if (method, first["seed"]) in seen:  # the same experiment in another folder (see `load_results`)
        continue
      seen.add((method, first["seed"]))
      out.append({"method": method, "seed": first["seed"], "selection": data["selection"],
                  "selected_on": data.get("selected_on", {})})
  return out


def validation_selected(selections: list[dict], scenarios) -> dict[int, tuple[str, float]]:
  """Per seed: the method with the lowest mean validation MAE over ``scenarios``.

  Each scenario's validation MAE is read from the validation set that scenario
  was selected on (its own with ``eval.selection=per_scenario``, else the warm
  one). Methods lacking a validation MAE for some scenario are not candidates.

  Returns:
    seed -> (method, mean validation MAE).
  """
  best: dict[int, tuple[str, float]] = {}
  for sel in selections:
    vals = []
    for s in scenarios:
      key = sel["selected_on"].get(s, "valid")
      entry = sel["selection"].get(key)
      if not isinstance(entry, dict) or "val_mae" not in entry:
        break
      vals.append(float(entry["val_mae"]))
    else:
      score = float(np.mean(vals))
      if sel["seed"] not in best or score < best[sel["seed"]][1]:
        best[sel["seed"]] = (sel["method"], score)
  return best


SELECTED = "validation-selected"


def _mae_by_method_and_scenario(rows) -> tuple[list[str], list[str], dict]:
  """(methods, scenarios) in first-seen order and (method, scenario) -> MAE per seed."""
  methods = list(dict.fromkeys(r["method"] for r in rows))
  scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
  vals = defaultdict(list)
  for r in rows:
    vals[(r["method"], r["scenario"])].append(r["mae"])
  return methods, scenarios, vals


def mae_overview(results: dict, selected: dict[int, tuple[str, float]] | None = None) -> str:
  """Markdown: methods × scenarios, MAE mean ± std over seeds, best per scenario in bold.

  With ``selected`` (see `validation_selected`), a last row gives the test
  MAE of each seed's validation-selected method.
  """
  rows = results["rows"]
  methods, scenarios, vals = _mae_by_method_and_scenario(rows)
  if selected:
    for r in rows:
      if r["seed"] in selected and selected[r["seed"]][0] == r["method"]:
        vals[(SELECTED, r["scenario"])].append(r["mae"])
  best = {s: min(np.mean(vals[(m, s)]) for m in methods if vals[(m, s)]) for s in scenarios}
  lines = ["| method | " + " | ".join(scenarios) + " |", "|---|" + "---|" * len(scenarios)]
  for m in methods + ([SELECTED] if selected else []):
    cells = []
    for s in scenarios:
      v = vals[(m, s)]
      if not v:
        cells.append("")
        continue
      cells.append(mean_std_cell(v, bold=m != SELECTED and np.mean(v) == best[s]))
    label = m
    if m == SELECTED:
      picks = ", ".join(f"seed {seed}: {meth}" for seed, (meth, _) in sorted(selected.items()))
      label = f"{SELECTED} ({picks})"
    lines.append(f"| {label} | " + " | ".join(cells) + " |")
  n_seeds = max(len(v) for v in vals.values())
  return ("MAE (mean over seeds; lower is better)\n\n" + "\n".join(lines) + f"\n\n{std_note(n_seeds)}\n")


def _metrics(rows) -> tuple[str, ...]:
  keys = [k for k in rows[0] if k not in ("method", "scenario", "seed", "tasks", "support")]
  return tuple(keys)


def plot_mae_by_scenario(results: dict, path: pathlib.Path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  methods, scenarios, vals = _mae_by_method_and_scenario(results["rows"])
  fig, ax = plt.subplots(figsize=(min(16, max(6, 1.2 * len(scenarios) * len(methods) / 4)), 4.5))
  width = 0.8 / len(methods)
  x = np.arange(len(scenarios))
  colours = plt.get_cmap("tab20" if len(methods) > 10 else "tab10")  # one colour per method
  for i, m in enumerate(methods):
    means = [np.mean(vals[(m, s)]) if vals[(m, s)] else np.nan for s in scenarios]
    stds = [seed_std(vals[(m, s)]) if len(vals[(m, s)]) > 1 else 0 for s in scenarios]
    ax.bar(x + i * width - 0.4 + width / 2, means, width, yerr=stds, label=m, color=colours(i % colours.N))
  ax.set_xticks(x, scenarios)
  ax.set_ylabel("MAE (lower is better)")
  lo = np.nanmin([np.mean(v) for v in vals.values()])
  ax.set_ylim(lo * 0.9, None)
  ax.legend(fontsize=7, ncol=1 + len(methods) // 12, loc="upper left", bbox_to_anchor=(1.0, 1.0))
  ax.set_title("MAE by scenario and method (mean ± sample std over seeds)")
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
  choices = support_choices(curve)
  styles = dict(zip(choices, ("-", "--", ":", "-.")))
  colours = plt.get_cmap("tab20" if len(methods) > 10 else "tab10")  # one colour per method, a style per choice
  fig, axes = plt.subplots(1, len(scenarios), figsize=(4 * len(scenarios), 3.5), squeeze=False)
  for ax, s in zip(axes[0], scenarios):
    for i, m in enumerate(methods):
      for c in choices:
        pts = defaultdict(list)
        for r in curve:
          if r["scenario"] == s and r["method"] == m and choice_of(r) == c:
            pts[r["support"]].append(r["mae"])
        ks = sorted(pts)
        if ks:
          ax.plot(ks, [np.mean(pts[k]) for k in ks], marker="o", linestyle=styles.get(c, "-"),
                  color=colours(i % colours.N), label=m if choices == [RANDOM_CHOICE] else f"{m} ({c})")
    ax.set_xscale("log")
    ax.set_xlabel("support ratings per user")
    ax.set_title(s)
  axes[0][0].set_ylabel("MAE")
  axes[0][-1].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


RANDOM_CHOICE = "random"  # support-curve rows without a "choice" key (every run before eval.support_choice)


def choice_of(row: dict) -> str:
  """How a support-curve row's support sets were chosen (``eval.support_choice``; no key: ``random``)."""
  return row.get("choice", RANDOM_CHOICE)


def support_choices(curve: list[dict]) -> list[str]:
  """The support choices of the curve's rows, in first-seen order."""
  return list(dict.fromkeys(choice_of(r) for r in curve))


def support_curve_table(results: dict) -> str:
  """Markdown: MAE (mean over seeds) per method and support size, one table per support choice and scenario.

  With only random support sets (``eval.support_choice=random``, and every
  run before it) the tables are as they always were.
  """
  curve = results["support_curve"]
  choices = support_choices(curve)
  out = []
  for c in choices:
    rows = [r for r in curve if choice_of(r) == c]
    for s in dict.fromkeys(r["scenario"] for r in rows):
      ks = sorted({r["support"] for r in rows if r["scenario"] == s})
      what = "" if choices == [RANDOM_CHOICE] else f", support chosen by {c}"
      out.append(f"\n### MAE by support size: {s}{what}\n")
      out.append("| method | " + " | ".join(f"K={k}" for k in ks) + " |")
      out.append("|---|" + "---|" * len(ks))
      for m in dict.fromkeys(r["method"] for r in rows):
        cells = []
        for k in ks:
          v = [r["mae"] for r in rows if r["scenario"] == s and r["method"] == m and r["support"] == k]
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
          "Mean over seeds, ± the sample standard deviation (ddof=1); best per scenario and metric in bold. "
          "Rows of one method run with different settings are labelled with the keys that differ.\n"]
  scenarios = list(dict.fromkeys(r["scenario"] for r in results["rows"]))
  # Extra tables ("<scenario>:<variant>") share their scenario's validation set: not counted twice.
  selected = validation_selected(load_selections(workdirs), [s for s in scenarios if ":" not in s])
  text += [mae_overview(results, selected), markdown_table(results, metrics)]
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
