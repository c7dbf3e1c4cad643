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

Under several processes (``metarec run --distributed``, `distributed`) only
process 0 writes config, logs, parts and results; the others read the same
folder (a shared file system) and write nothing but their share of the
checkpoints (orbax, `train.loop`).
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Iterator

import jax
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
  to read a finished one. Under several processes only process 0 writes
  (``writer``); every process resumes from the same parts (those present
  when the run started), so all of them fit the same methods.
  """

  def __init__(self, path: str | pathlib.Path, config: ml_collections.ConfigDict):
    self.path = pathlib.Path(path)
    self.config = config
    self.writer = jax.process_index() == 0
    self.log = JsonlLog(self.path / METRICS if self.writer else None)
    self._resumable: frozenset[str] | None = None  # several processes: the parts present at the start

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
    writer = jax.process_index() == 0
    if saved.exists():
      old = cfg_lib.from_json(saved.read_text())
      changes = cfg_lib.diff(old, config)
      if changes:
        finished = " (a finished run: its results are kept)" if (path / RESULTS).exists() else ""
        raise cfg_lib.ConfigError(
            f"workdir {path} holds a run with a different config{finished}:\n  " + "\n  ".join(changes)
            + "\nUse another --workdir, or delete this one to start over.")
    elif writer:
      path.mkdir(parents=True, exist_ok=True)
      write_text(saved, cfg_lib.to_json(config))
    if origins and writer:
      write_text(path / RUN, json.dumps({"imports": list(origins)}, indent=1))
    rd = cls(path, config)
    if jax.process_count() > 1:
      rd._resumable = frozenset(p.name for p in (path / PARTS).glob("*.json"))
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices(f"metarec RunDir.create {path.name}")  # no part written before all saw them
    return rd

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
    if self.writer:
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
    if self._resumable is not None and path.name not in self._resumable:
      return None  # several processes: written during this run (by process 0), not to be skipped by the others
    return json.loads(path.read_text()) if path.exists() else None

  def write_part(self, method: str, seed: int, record: dict[str, Any]) -> None:
    if self.writer:
      write_text(self.part_path(method, seed), json.dumps(record, indent=1))

  def parts(self) -> Iterator[dict[str, Any]]:
    """Every finished part, in file-name order."""
    for path in sorted((self.path / PARTS).glob("*.json")):
      yield json.loads(path.read_text())

  def write_results(self, results: dict, tables: str) -> None:
    """``results.json`` and ``results.md`` (``tables``: the markdown); process 0 only."""
    if not self.writer:
      return
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
