"""The run folder and its one owner, `RunDir`.

A run folder (``metarec run ... --workdir DIR``) holds::

    config.json       the experiment config (function variants written out)
    run.json          where the run's own methods and model parts were defined (files to import on reopening)
    metrics.jsonl     one JSON object per line: training steps, validation values, selections
    checkpoints/      orbax checkpoints, one folder per (owner, seed): ``<owner>__seed<seed>``
    parts/            one finished method x seed: ``<method>__seed<seed>.json`` (rows, support curve, selection)
    results.json      ``{"rows": [...], "support_curve": [...]}``
    results.md        the tables (and the support-size curve's, when scored)
    distill/          `metarec distill` reports

Everything that reads or writes a run folder goes through `RunDir`; files
are written to a temporary name and renamed, so a killed write never leaves
half a file.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Iterator

import ml_collections

from metarec_jax import config as cfg_lib
from metarec_jax.pyfile import import_origin

CONFIG = "config.json"
RUN = "run.json"
METRICS = "metrics.jsonl"
RESULTS = "results.json"
RESULTS_MD = "results.md"
PARTS = "parts"
CHECKPOINTS = "checkpoints"
DISTILL = "distill"


def write_text(path: pathlib.Path, text: str) -> None:
  """Writes ``text`` to ``path`` through a temporary file in the same folder (atomic on POSIX)."""
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
  tmp.write_text(text)
  os.replace(tmp, path)


class JsonlLog:
  """Appends one JSON object per line (nowhere when ``path`` is None)."""

  def __init__(self, path: pathlib.Path | None):
    self.path = path

  def write(self, **record) -> None:
    if self.path is None:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")


class RunDir:
  """The owner of one run folder: config, logs, checkpoints, parts and results.

  Use `RunDir.create` to start or resume a run with a config, `RunDir.open`
  to read a finished one.
  """

  def __init__(self, path: str | pathlib.Path, config: ml_collections.ConfigDict):
    self.path = pathlib.Path(path)
    self.config = config
    self.log = JsonlLog(self.path / METRICS)

  # ------------------------------------------------------------------ opening

  @classmethod
  def create(cls, path: str | pathlib.Path, config: ml_collections.ConfigDict,
             origins: list[dict[str, str]] = ()) -> "RunDir":
    """Starts a run in ``path``, or resumes the run there if it has the same config.

    Args:
      path: the folder (created if missing).
      config: the run's config.
      origins: files / modules that define the run's own methods and model
        parts (`pyfile.origin`), imported again by `open`.

    Raises:
      ConfigError: the folder holds a run with another config (the differing
        keys are listed; nothing is changed).
    """
    path = pathlib.Path(path)
    config = cfg_lib.canonical(config)
    saved = path / CONFIG
    if saved.exists():
      old = cfg_lib.from_json(saved.read_text())
      changes = cfg_lib.diff(old, config)
      if changes:
        finished = " (a finished run: its results are kept)" if (path / RESULTS).exists() else ""
        raise cfg_lib.ConfigError(
            f"workdir {path} holds a run with a different config{finished}:\n  " + "\n  ".join(changes)
            + "\nUse another --workdir, or delete this one to start over.")
    else:
      path.mkdir(parents=True, exist_ok=True)
      write_text(saved, cfg_lib.to_json(config))
    if origins:
      write_text(path / RUN, json.dumps({"imports": list(origins)}, indent=1))
    return cls(path, config)

  @classmethod
  def open(cls, path: str | pathlib.Path) -> "RunDir":
    """Opens an existing run folder and imports the files its methods were defined in.

    Raises:
      FileNotFoundError: ``path`` holds no ``config.json``.
    """
    path = pathlib.Path(path)
    saved = path / CONFIG
    if not saved.is_file():
      raise FileNotFoundError(f"{saved} does not exist: {path} is not a metarec workdir")
    run = path / RUN
    if run.is_file():
      for entry in json.loads(run.read_text()).get("imports", []):
        import_origin(entry)
    return cls(path, cfg_lib.from_json(saved.read_text()))

  def rewrite_config(self, config: ml_collections.ConfigDict) -> None:
    """Records a changed config (evaluation-only keys, `metarec eval --set`)."""
    self.config = config
    write_text(self.path / CONFIG, cfg_lib.to_json(config))

  # ------------------------------------------------------------------ checkpoints

  def checkpoint_dir(self, owner: str, seed: int) -> pathlib.Path:
    """The orbax folder of ``owner`` (a method's checkpoint name) and ``seed`` (not created here)."""
    return self.path / CHECKPOINTS / f"{owner}__seed{seed}"

  def has_checkpoint(self, owner: str, seed: int) -> bool:
    return self.checkpoint_dir(owner, seed).is_dir()

  # ------------------------------------------------------------------ parts and results

  def part_path(self, method: str, seed: int) -> pathlib.Path:
    return self.path / PARTS / f"{method}__seed{seed}.json"

  def read_part(self, method: str, seed: int) -> dict[str, Any] | None:
    """A finished method x seed (``rows``, ``support_curve``, ``selection``, ``selected_on``), or None."""
    path = self.part_path(method, seed)
    return json.loads(path.read_text()) if path.exists() else None

  def write_part(self, method: str, seed: int, record: dict[str, Any]) -> None:
    write_text(self.part_path(method, seed), json.dumps(record, indent=1))

  def parts(self) -> Iterator[dict[str, Any]]:
    """Every finished part, in file-name order."""
    for path in sorted((self.path / PARTS).glob("*.json")):
      yield json.loads(path.read_text())

  def write_results(self, results: dict, tables: str) -> None:
    """``results.json`` and ``results.md`` (``tables``: the markdown)."""
    write_text(self.path / RESULTS, json.dumps(results, indent=1))
    write_text(self.path / RESULTS_MD, tables)

  def read_results(self) -> dict:
    """``results.json``.

    Raises:
      FileNotFoundError: the run has not finished.
    """
    path = self.path / RESULTS
    if not path.exists():
      raise FileNotFoundError(f"{path} does not exist: run `metarec run` into {self.path} first")
    return json.loads(path.read_text())

  def report_path(self, kind: str, name: str) -> pathlib.Path:
    """Where a command's report on this run goes, e.g. ``distill/<teacher>__seed0.json``."""
    return self.path / kind / name
