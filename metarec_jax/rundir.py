"""The run folder and its one owner, `RunDir`.

A run folder (``metarec run ... --workdir DIR``) holds::

    config.json       the experiment config (function variants written out)
    run.json          where the run's own methods and model parts were defined (files to import on reopening)
    env.json          where and when it ran: versions, devices, git, command, sessions, time per method x seed
    metrics.jsonl     one JSON object per line: training steps, validation values, selections
    tensorboard/      TensorBoard event files, one folder per method x seed (``train.tensorboard``)
    checkpoints/      orbax checkpoints, one folder per (owner, seed): ``<owner>__seed<seed>``
    parts/            one finished method x seed: ``<method>__seed<seed>.json`` (rows, support curve, selection)
    results.json      ``{"rows": [...], "support_curve": [...]}``
    results.md        the tables (and the support-size curve's, when scored)
    distill/          `metarec distill` reports

Everything that reads or writes a run folder goes through `RunDir`; files
are written to a temporary name and renamed, so a killed write never leaves
half a file.

Under several processes (``metarec run --distributed``, `distributed`) only
process 0 writes config, logs, env.json, parts and results; the others read
the same folder (a shared file system) and write nothing but their share of
the checkpoints (orbax, `train.loop`).

The log (`RunDir.log`, a `runlog.RunLog`) sends each record to
metrics.jsonl, TensorBoard, W&B and the console; env.json's sessions and
timings are written by `experiment.run` through `start_session`,
`record_time` and `end_session`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pathlib
import socket
import sys
import time
from typing import Any, Iterator

import jax
import ml_collections

from metarec_jax import config as cfg_lib
from metarec_jax import faults, runlog
from metarec_jax.pyfile import import_origin
from metarec_jax.runlog import JsonlLog, RunLog  # noqa: F401  (JsonlLog: its old home)

CONFIG = "config.json"
RUN = "run.json"
ENV = "env.json"
METRICS = "metrics.jsonl"
TENSORBOARD = "tensorboard"
RESULTS = "results.json"
RESULTS_MD = "results.md"
PARTS = "parts"
CHECKPOINTS = "checkpoints"
DISTILL = "distill"
LOCK = "lock"


class RunDirWriteError(OSError, ValueError):
  """A run-folder file could not be written (disk full, read-only folder, ...): one line naming the path.

  An OSError (``errno`` is the cause's) and a ValueError, so the CLI prints
  it as one line like other user errors.
  """


class RunDirLocked(cfg_lib.ConfigError):
  """Another live process holds the run folder's lock."""


def write_text(path: pathlib.Path, text: str) -> None:
  """Writes ``text`` to ``path`` through a temporary file in the same folder (atomic on POSIX).

  Raises:
    RunDirWriteError: the folder or the file cannot be written (the path and
      the cause in one line; no temporary file is left behind).
  """
  tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(text)
    faults.point("write")
    os.replace(tmp, path)
  except OSError as e:
    with contextlib.suppress(OSError):
      tmp.unlink()
    if isinstance(e, RunDirWriteError):
      raise
    raise RunDirWriteError(e.errno or errno.EIO, f"cannot write {path}: {e.strerror or e}") from None


# ---------------------------------------------------------------------- the lock

_held: dict[str, int] = {}  # this process's locks: resolved folder -> depth (re-entrant: eval runs `run`)


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # another user's live process
  return True


def acquire_lock(path: pathlib.Path, say=print) -> bool:
  """Takes ``path/lock`` (pid, host, start time, command), created with O_CREAT|O_EXCL.

  Re-entrant within one process. A lock left by a dead process on this host
  is taken over (with a message); a lock on another host, or of a live
  process, refuses.

  Returns:
    True (each call is matched by one `release_lock`).

  Raises:
    RunDirLocked: another live process holds it (its pid, host and the folder).
  """
  key = str(path.resolve())
  if key in _held:
    _held[key] += 1
    return True
  path.mkdir(parents=True, exist_ok=True)
  lock = path / LOCK
  me = {"pid": os.getpid(), "host": socket.gethostname(), "start": runlog.now(),
        "command": " ".join([pathlib.Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else ""}
  for _ in range(3):
    try:
      fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      try:
        holder = json.loads(lock.read_text())
      except FileNotFoundError:
        continue  # released meanwhile
      except (OSError, ValueError):
        holder = {}
      pid, host = holder.get("pid"), holder.get("host")
      if host == me["host"] and isinstance(pid, int) and not _alive(pid):
        say(f"metarec: {path}: taking over the stale lock of process {pid} on {host} (no longer running; "
            f"started {holder.get('start', '?')})")
        with contextlib.suppress(FileNotFoundError):
          lock.unlink()
        continue
      raise RunDirLocked(
          f"workdir {path} is in use by process {pid} on {host} (since {holder.get('start', '?')}: "
          f"{holder.get('command', '?')}); wait for it to finish, or delete {lock} if it is not running")
    except OSError as e:
      raise RunDirWriteError(e.errno or errno.EIO, f"cannot create {lock}: {e.strerror or e}") from None
    with os.fdopen(fd, "w") as f:
      f.write(json.dumps(me))
    _held[key] = 1
    return True
  raise RunDirLocked(f"workdir {path}: could not take its lock {lock} (it keeps changing)")


def release_lock(path: pathlib.Path) -> None:
  """Releases ``path/lock`` taken by `acquire_lock` (the outermost release deletes the file)."""
  key = str(path.resolve())
  depth = _held.get(key, 0)
  if depth > 1:
    _held[key] = depth - 1
    return
  _held.pop(key, None)
  lock = path / LOCK
  try:
    holder = json.loads(lock.read_text())
  except (OSError, ValueError):
    return
  if holder.get("pid") == os.getpid():
    with contextlib.suppress(FileNotFoundError):
      lock.unlink()


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
    self.log = RunLog.for_run(self.path, self.path / METRICS, self.path / TENSORBOARD, config, self.writer)
    self._resumable: frozenset[str] | None = None  # several processes: the parts present at the start
    self._session: int | None = None  # this session's index in env.json's sessions
    self._session_start = 0.0
    self._locked = False  # this RunDir took the folder's lock (released by `close`)

  # ------------------------------------------------------------------ opening

  @classmethod
  def create(cls, path: str | pathlib.Path, config: ml_collections.ConfigDict,
             origins: list[dict[str, str]] = (), *, lock: bool = False) -> "RunDir":
    """Starts a run in ``path``, or resumes the run there if it has the same config.

    Args:
      path: the folder (created if missing).
      config: the run's config.
      origins: files / modules that define the run's own methods and model
        parts (`pyfile.origin`), imported again by `open`.
      lock: take the folder's lock (`acquire_lock`; process 0 only), released
        by `close` (`experiment.run` does).

    Raises:
      ConfigError: the folder holds a run with another config (the differing
        keys are listed; nothing is changed), or ``train.wandb_project`` is
        set and wandb is not installed.
      RunDirLocked: ``lock`` and another live process holds the folder.
    """
    path = pathlib.Path(path)
    config = cfg_lib.canonical(config)
    writer = jax.process_index() == 0
    locked = bool(lock and writer and acquire_lock(path))
    try:
      rd = cls._create(path, config, origins, writer)
    except BaseException:
      if locked:
        release_lock(path)
      raise
    rd._locked = locked
    if locked:
      rd._sweep_temporaries()
    return rd

  def _sweep_temporaries(self) -> None:
    """Deletes the temporary files (`write_text`) a killed process left; the lock holder only."""
    for folder in (self.path, self.path / PARTS):
      for tmp in folder.glob(".*.tmp*"):
        with contextlib.suppress(OSError):
          tmp.unlink()

  @classmethod
  def _create(cls, path: pathlib.Path, config: ml_collections.ConfigDict, origins, writer: bool) -> "RunDir":
    saved = path / CONFIG
    if saved.exists():
      old = cfg_lib.from_json(saved.read_text())
      changes = cfg_lib.diff(old, config)
      if changes:
        finished = " (a finished run: its results are kept)" if (path / RESULTS).exists() else ""
        raise cfg_lib.ConfigError(
            f"workdir {path} holds a run with a different config{finished}:\n  " + "\n  ".join(changes)
            + "\nUse another --workdir, or delete this one to start over.")
    project = str(config.train.get("wandb_project", "") or "")
    if project:
      runlog.import_wandb(project)  # every process: all fail alike, before anything is written
    if not saved.exists() and writer:
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
  def open(cls, path: str | pathlib.Path, *, lock: bool = False) -> "RunDir":
    """Opens an existing run folder and imports the files its methods were defined in.

    Args:
      path: the run folder.
      lock: take the folder's lock (`metarec eval`, which rewrites results;
        process 0 only), released by `close`. Readers leave it False.

    Raises:
      FileNotFoundError: ``path`` holds no ``config.json``.
      RunDirLocked: ``lock`` and another live process holds the folder.
    """
    path = pathlib.Path(path)
    saved = path / CONFIG
    if not saved.is_file():
      raise FileNotFoundError(f"{saved} does not exist: {path} is not a metarec workdir")
    locked = bool(lock and jax.process_index() == 0 and acquire_lock(path))
    try:
      run = path / RUN
      if run.is_file():
        for entry in json.loads(run.read_text()).get("imports", []):
          import_origin(entry)
      rd = cls(path, cfg_lib.from_json(saved.read_text()))
    except BaseException:
      if locked:
        release_lock(path)
      raise
    rd._locked = locked
    return rd

  def close(self) -> None:
    """Releases the folder's lock if this RunDir took it (`create` / `open` with ``lock``)."""
    if self._locked:
      self._locked = False
      release_lock(self.path)

  def __enter__(self) -> "RunDir":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def rewrite_config(self, config: ml_collections.ConfigDict) -> None:
    """Records a changed config (evaluation-only keys, `metarec eval --set`)."""
    self.config = config
    if self.writer:
      write_text(self.path / CONFIG, cfg_lib.to_json(config))

  # ------------------------------------------------------------------ provenance (env.json)

  def read_env(self) -> dict[str, Any]:
    """``env.json`` (empty when the run has none yet)."""
    path = self.path / ENV
    return json.loads(path.read_text()) if path.is_file() else {}

  def _write_env(self, env: dict[str, Any]) -> None:
    write_text(self.path / ENV, json.dumps(env, indent=1))

  def start_session(self, mode: str = "run") -> None:
    """Appends this session to env.json: start time, command, versions, devices, git (`runlog.environment`).

    The top-level ``command``, ``packages``, ``jax`` and ``git`` repeat the
    latest session's; earlier sessions keep theirs. Process 0 only.

    Args:
      mode: what the session does (``run``; ``eval``: `metarec eval`).
    """
    if not self.writer:
      return
    session = {"start": runlog.now(), "end": None, "wall_s": None, "status": "running", **runlog.environment(mode)}
    env = self.read_env()
    sessions = env.pop("sessions", [])
    sessions.append(session)
    self._session, self._session_start = len(sessions) - 1, time.perf_counter()
    latest = {k: session[k] for k in ("command", "packages", "jax", "git")}
    self._write_env({"format": 1, **latest, "sessions": sessions, "methods": env.get("methods", {}),
                     "populations": env.get("populations", [])})

  def end_session(self, status: str = "finished", error: str | None = None) -> None:
    """Records the session's end time, wall seconds and status (``finished``, ``failed``, ``interrupted``)."""
    if not self.writer or self._session is None:
      return
    env = self.read_env()
    session = env["sessions"][self._session]
    session.update(end=runlog.now(), wall_s=round(time.perf_counter() - self._session_start, 3), status=status)
    if error:
      session["error"] = error
    self._write_env(env)
    self._session = None

  def record_time(self, method: str, seed: int, start: str, wall_s: float, **extra: Any) -> None:
    """Records when ``method`` x ``seed`` was fitted and evaluated (``methods["<method>__seed<seed>"]``).

    Args:
      method: the method.
      seed: the seed.
      start: its start time (`runlog.now`); the end is now.
      wall_s: its wall-clock seconds.
      **extra: more fields (e.g. ``population``: the index of the population it trained in).
    """
    if not self.writer:
      return
    env = self.read_env()
    env.setdefault("methods", {})[f"{method}__seed{seed}"] = {
        "method": method, "seed": seed, "start": start, "end": runlog.now(), "wall_s": round(wall_s, 3),
        "session": self._session, **extra}
    self._write_env(env)

  def record_population(self, members: list[str], start: str, wall_s: float) -> int | None:
    """Records a population's training (``train.vectorize``); returns its index in ``populations``."""
    if not self.writer:
      return None
    env = self.read_env()
    populations = env.setdefault("populations", [])
    populations.append({"members": members, "start": start, "end": runlog.now(), "wall_s": round(wall_s, 3),
                        "session": self._session})
    self._write_env(env)
    return len(populations) - 1

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
      faults.point("part")
      write_text(self.part_path(method, seed), json.dumps(record, indent=1))

  def parts(self) -> Iterator[dict[str, Any]]:
    """Every finished part, in file-name order."""
    for path in sorted((self.path / PARTS).glob("*.json")):
      yield json.loads(path.read_text())

  def write_results(self, results: dict, tables: str) -> None:
    """``results.json`` and ``results.md`` (``tables``: the markdown); process 0 only."""
    if not self.writer:
      return
    faults.point("results")
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
