"""A run's log and its provenance: every record to metrics.jsonl, TensorBoard, W&B and the console; env.json.

`RunLog` is the log a run folder (`rundir.RunDir.log`) hands to the training
loops (`train.loop`, `train.population`) and to `experiment.run`. Each
record, a flat dict such as ``{"method": "maml", "seed": 0, "step": 100,
"loss": 0.81, "grad_norm": 1.3, ...}``, fans out to:

- ``metrics.jsonl``: one JSON object per line, unchanged (`JsonlLog`);
- TensorBoard: event files under ``tensorboard/<method>__seed<seed>/``
  (``train.tensorboard``, on by default), written with tensorboardX: a small,
  well-kept writer that needs no TensorFlow (it writes the protobuf records
  itself) and is a core dependency. Scalars per step: training values as
  ``train/<key>`` (loss, support_loss when the step reports it, grad_norm,
  param_norm, tasks_per_s), validation values as ``valid/<key>`` (one per
  validation set: ``val_mae`` for the main set, ``val_mae_<set>`` for the
  others, as in metrics.jsonl); the selection as text. The hyperparameters
  are a text summary of config.json (tag ``config``, the TEXT tab) rather
  than tensorboardX's ``add_hparams``: config.json is nested and holds tuples
  and per-method blocks that the HParams plugin (scalar values only) would
  flatten into strings, ``add_hparams`` writes each call into an extra
  timestamped sub-run, and every method x seed of one run shares one config,
  so the HParams table would compare nothing within a run (sweeps and
  ``metarec report`` compare settings across runs);
- Weights & Biases when ``train.wandb_project`` is set (the ``wandb`` extra,
  imported only then): one W&B run per session of a run folder, every key
  under ``<method>__seed<seed>/`` with its own step axis;
- the console: one line every ``train.log_every`` steps for a training loop
  that shows no progress bar (``metarec run --no-progress``), e.g.
  ``maml seed 0 step 100/1000: loss 0.812 grad_norm 1.3 val_mae 0.771 412 tasks/s``.

Only process 0 writes (`rundir.RunDir.writer`); the other processes' logs
are silent. A resumed run appends: metrics.jsonl grows, TensorBoard gets a
new event file that discards the steps after the resumed checkpoint (they
are logged again), W&B a new run.

`environment` and `git_info` describe where a run ran (``env.json``, written
by `rundir.RunDir`).
"""

from __future__ import annotations

import collections
import datetime
import importlib
import importlib.metadata
import json
import os
import pathlib
import platform
import subprocess
import sys
from typing import Any, Callable

import jax
import ml_collections

from metarec_jax import config as cfg_lib

WANDB_HINT = "pip install metarec-jax[wandb]"

# The distributions env.json names (pip names); python is added by `environment`.
PACKAGES = ("metarec-jax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")

_KEY_FIELDS = ("method", "seed", "step")


class JsonlLog:
  """Appends one JSON object per line (nowhere when ``path`` is None)."""

  def __init__(self, path: pathlib.Path | None):
    self.path = path

  def write(self, **record) -> None:
    if self.path is None:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")


def _numbers(record: dict[str, Any]) -> dict[str, float]:
  """The record's numeric values, without method, seed and step."""
  return {k: float(v) for k, v in record.items()
          if k not in _KEY_FIELDS and isinstance(v, (int, float)) and not isinstance(v, bool)}


def _run_name(method: str, seed: int) -> str:
  return f"{method}__seed{seed}"


# ---------------------------------------------------------------------- TensorBoard


_files = 0  # event files opened by this process


def _summary_writer():
  """tensorboardX's ``SummaryWriter``, imported without torch.

  tensorboardX imports torch, when it is installed, only to accept torch
  tensors (metarec logs floats): hiding it during the import saves seconds
  per process. A torch already imported is left alone.
  """
  if "torch" in sys.modules:
    from tensorboardX import SummaryWriter
    return SummaryWriter
  sys.modules["torch"] = None  # `import torch` raises ImportError, which tensorboardX expects
  try:
    from tensorboardX import SummaryWriter
  finally:
    if "torch" in sys.modules and sys.modules["torch"] is None:
      del sys.modules["torch"]
  return SummaryWriter


class TensorBoardLog:
  """TensorBoard event files, one folder per method x seed under ``root`` (tensorboardX).

  Writers open at a key's first record and close in `done` or `close`; a
  record after that opens a new event file in the same folder (TensorBoard
  merges them). A record without a step (a selection) goes in as text, and
  only for a method x seed with curves: baselines get no folder.
  """

  def __init__(self, root: pathlib.Path, config: ml_collections.ConfigDict | None = None):
    self.root = root
    self.config = config
    self._writers: dict[tuple[str, int], Any] = {}
    self._purge: dict[tuple[str, int], int] = {}

  def resume_at(self, method: str, seed: int, step: int) -> None:
    """Training of ``method`` x ``seed`` resumes after ``step``: a new writer hides older events past it."""
    if step > 0 and (method, seed) not in self._writers:
      self._purge[(method, seed)] = step + 1

  def _writer(self, method: str, seed: int):
    key = (method, seed)
    if key not in self._writers:
      global _files
      _files += 1  # event files are named by the second: two in one second would share a name
      writer = _summary_writer()(logdir=str(self.root / _run_name(method, seed)), purge_step=self._purge.pop(key, None),
                                 flush_secs=30, filename_suffix=f".{os.getpid()}.{_files:05d}")
      if self.config is not None:
        writer.add_text("config", "```json\n" + cfg_lib.to_json(self.config) + "\n```", global_step=0)
      self._writers[key] = writer
    return self._writers[key]

  def write(self, record: dict[str, Any]) -> None:
    if "method" not in record or "seed" not in record:
      return
    method, seed, step = record["method"], int(record["seed"]), record.get("step")
    if step is None:  # a selection: as text, beside the curves of a method that has some (not a baseline's)
      if (method, seed) not in self._writers and not (self.root / _run_name(method, seed)).is_dir():
        return
      writer = self._writer(method, seed)
      for key, value in record.items():
        if key not in _KEY_FIELDS:
          writer.add_text(key, "```json\n" + json.dumps(value, indent=1, default=str) + "\n```")
      return
    writer = self._writer(method, seed)
    group = "train" if "loss" in record else "valid"
    for key, value in _numbers(record).items():
      writer.add_scalar(f"{group}/{key}", value, global_step=int(step))

  def flush(self, method: str | None = None, seed: int | None = None) -> None:
    for key, writer in self._writers.items():
      if method is None or key == (method, seed):
        writer.flush()

  def done(self, method: str, seed: int) -> None:
    writer = self._writers.pop((method, seed), None)
    if writer is not None:
      writer.close()

  def close(self) -> None:
    for writer in self._writers.values():
      writer.close()
    self._writers.clear()


# ---------------------------------------------------------------------- Weights & Biases


def import_wandb(project: str):
  """The ``wandb`` module.

  Raises:
    ConfigError: it is not installed (one line naming the extra to install).
  """
  try:
    return importlib.import_module("wandb")
  except ImportError:
    raise cfg_lib.ConfigError(f"train.wandb_project={project!r} needs the wandb package: {WANDB_HINT} "
                              "(or set train.wandb_project to '')") from None


class WandbLog:
  """One W&B run per session: keys ``<method>__seed<seed>/train/loss`` etc., each method x seed with its own step."""

  def __init__(self, project: str, config: ml_collections.ConfigDict | None, folder: pathlib.Path | None):
    self.project = project
    self.config = config
    self.folder = folder
    self._run = None
    self._axes: set[str] = set()

  def _start(self):
    wandb = import_wandb(self.project)
    name = str(self.config.name) if self.config is not None else None
    flat = ({k: list(v) if isinstance(v, tuple) else v for k, v in cfg_lib.flat_keys(self.config).items()
             if k != "variants"} if self.config is not None else {})
    kwargs = dict(project=self.project, name=name, group=name, job_type="train", config=flat)
    if self.folder is not None:
      self.folder.mkdir(parents=True, exist_ok=True)
      kwargs["dir"] = str(self.folder)
    self._run = wandb.init(**kwargs)

  def write(self, record: dict[str, Any]) -> None:
    if "method" not in record or "seed" not in record:
      return
    if self._run is None:
      self._start()
    prefix = _run_name(record["method"], int(record["seed"])) + "/"
    step = record.get("step")
    if step is None:  # a selection: into the run's summary
      for key, value in record.items():
        if key in _KEY_FIELDS:
          continue
        for path, leaf in _leaves(value, f"{prefix}{key}"):
          self._run.summary[path] = leaf
      return
    if prefix not in self._axes:
      self._run.define_metric(f"{prefix}step")
      self._run.define_metric(f"{prefix}*", step_metric=f"{prefix}step")
      self._axes.add(prefix)
    group = "train" if "loss" in record else "valid"
    self._run.log({f"{prefix}step": int(step), **{f"{prefix}{group}/{k}": v for k, v in _numbers(record).items()}})

  def close(self) -> None:
    if self._run is not None:
      self._run.finish()
      self._run = None
      self._axes.clear()


def _leaves(value: Any, path: str):
  """(``a/b/c``, leaf) for every number or string in a nested dict."""
  if isinstance(value, dict):
    for k, v in value.items():
      yield from _leaves(v, f"{path}/{k}")
  elif isinstance(value, (int, float, str)):
    yield path, value


# ---------------------------------------------------------------------- console


def _fmt(value: float) -> str:
  return f"{value:.4g}"


def console_line(method: str, seed: int, step: int, steps: int | None, train: dict[str, Any],
                 valid: tuple[str, float] | None) -> str:
  """``maml seed 0 step 100/1000: loss 0.812 grad_norm 1.3 val_mae 0.771 412 tasks/s``.

  Args:
    method: the record's method (the checkpoint owner).
    seed: its seed.
    step: the step.
    steps: the total number of steps (None: not known).
    train: the training record (``loss``, ``grad_norm``, ``tasks_per_s``, ...).
    valid: the latest main validation value as (key, value), or None.
  """
  where = f"{step}/{steps}" if steps else f"{step}"
  parts = [f"{k} {_fmt(float(train[k]))}" for k in ("loss", "grad_norm") if k in train]
  if valid is not None:
    parts.append(f"{valid[0]} {_fmt(valid[1])}")
  if "tasks_per_s" in train:
    parts.append(f"{float(train['tasks_per_s']):.0f} tasks/s")
  return f"{method} seed {seed} step {where}: " + " ".join(parts)


class ConsoleLog:
  """The console line of each training record of a loop without a progress bar.

  A loop announces itself with `begin` (the total steps and the validation
  period): a training record at a step that also validates waits for that
  step's validation record, so the line shows the current value.
  """

  def __init__(self, out: Callable[[str], None] | None = None):
    self.out = out or (lambda line: print(line, flush=True))
    self._loops: dict[tuple[str, int], dict[str, Any]] = {}

  def begin(self, method: str, seed: int, steps: int | None, eval_every: int | None) -> None:
    self._loops[(method, seed)] = {"steps": steps, "eval_every": eval_every, "valid": None, "pending": None}

  def write(self, record: dict[str, Any]) -> None:
    loop = self._loops.get((record.get("method"), record.get("seed")))
    step = record.get("step")
    if loop is None or step is None:
      return
    if "loss" in record:
      self._emit(record["method"], record["seed"], loop)  # an earlier one still waiting
      steps, every = loop["steps"], loop["eval_every"]
      loop["pending"] = record
      if not (every and (step % every == 0 or step == steps)):
        self._emit(record["method"], record["seed"], loop)
    else:
      values = _numbers(record)
      if values:
        loop["valid"] = next(iter(values.items()))  # the main validation set's value comes first
      if loop["pending"] is not None and loop["pending"]["step"] == step:
        self._emit(record["method"], record["seed"], loop)

  def _emit(self, method: str, seed: int, loop: dict[str, Any]) -> None:
    record = loop["pending"]
    if record is not None:
      loop["pending"] = None
      self.out(console_line(method, seed, int(record["step"]), loop["steps"], record, loop["valid"]))

  def end(self, method: str, seed: int) -> None:
    loop = self._loops.pop((method, seed), None)
    if loop is not None:
      self._emit(method, seed, loop)


# ---------------------------------------------------------------------- the run log


class RunLog:
  """A run's log: `write` sends each record to metrics.jsonl, TensorBoard, W&B and the console.

  `rundir.RunDir` builds it for a run folder; ``RunLog()`` logs nowhere but
  the console (a run without a folder). The training loops call `begin`
  and `end` around a method x seed's training (anything with a ``write``
  method also works as their log, e.g. `JsonlLog`).

  Args:
    metrics: the metrics.jsonl file (None: none).
    tensorboard: the folder of TensorBoard runs (None: no TensorBoard).
    wandb_project: a W&B project ("": no W&B).
    config: the run config (TensorBoard's config text, W&B's config).
    folder: the run folder (W&B's local files go under ``<folder>/wandb``).
    writer: whether this process writes (process 0); False: the log is silent.
  """

  def __init__(self, metrics: pathlib.Path | None = None, *, tensorboard: pathlib.Path | None = None,
               wandb_project: str = "", config: ml_collections.ConfigDict | None = None,
               folder: pathlib.Path | None = None, writer: bool | None = None):
    self.writer = jax.process_index() == 0 if writer is None else writer
    self.jsonl = JsonlLog(metrics if self.writer else None)
    self.path = self.jsonl.path  # `JsonlLog`'s attribute, for callers that read it
    self.tensorboard = TensorBoardLog(tensorboard, config) if tensorboard is not None and self.writer else None
    self.wandb = WandbLog(wandb_project, config, folder) if wandb_project and self.writer else None
    self.console = ConsoleLog() if self.writer else None

  @classmethod
  def for_run(cls, folder: pathlib.Path, metrics: pathlib.Path, tensorboard: pathlib.Path,
              config: ml_collections.ConfigDict, writer: bool) -> "RunLog":
    """The log of a run folder, with the sinks ``config.train`` turns on."""
    train = config.get("train", ml_collections.ConfigDict())
    return cls(metrics, tensorboard=tensorboard if bool(train.get("tensorboard", True)) else None,
               wandb_project=str(train.get("wandb_project", "") or ""), config=config, folder=folder, writer=writer)

  def check(self) -> None:
    """Fails now, before any training, if a sink cannot work (W&B asked for and not installed).

    Raises:
      ConfigError: ``train.wandb_project`` is set and wandb is not installed.
    """
    if self.wandb is not None:
      import_wandb(self.wandb.project)

  def write(self, **record) -> None:
    """Sends one record everywhere (a no-op on processes other than 0)."""
    if not self.writer:
      return
    self.jsonl.write(**record)
    if self.tensorboard is not None:
      self.tensorboard.write(record)
    if self.wandb is not None:
      self.wandb.write(record)
    self.console.write(record)

  def begin(self, method: str, seed: int, *, steps: int | None = None, start: int = 0,
            eval_every: int | None = None, console: bool = False) -> None:
    """A training loop of ``method`` x ``seed`` starts (or resumes) at step ``start`` of ``steps``.

    Args:
      method: the records' method (the checkpoint owner).
      seed: the seed.
      steps: the last step (the console line's total).
      start: the step it resumes from (TensorBoard hides the older events past it).
      eval_every: the validation period (the console line waits for a step's validation value).
      console: print a line per training record (no progress bar is shown).
    """
    if not self.writer:
      return
    if self.tensorboard is not None:
      self.tensorboard.resume_at(method, seed, start)
    if console:
      self.console.begin(method, seed, steps, eval_every)

  def end(self, method: str, seed: int) -> None:
    """The training loop of ``method`` x ``seed`` ended (finished or not): its last line, its events on disk."""
    if not self.writer:
      return
    self.console.end(method, seed)
    if self.tensorboard is not None:
      self.tensorboard.flush(method, seed)

  def done(self, method: str, seed: int) -> None:
    """``method`` x ``seed`` is finished (trained, evaluated, recorded): closes its TensorBoard writer."""
    if self.writer and self.tensorboard is not None:
      self.tensorboard.done(method, seed)

  def flush(self) -> None:
    if self.tensorboard is not None:
      self.tensorboard.flush()

  def close(self) -> None:
    """Closes every writer and finishes the W&B run (a later record opens new ones)."""
    if self.tensorboard is not None:
      self.tensorboard.close()
    if self.wandb is not None:
      self.wandb.close()


# ---------------------------------------------------------------------- provenance (env.json)


def now() -> str:
  """The time as ISO 8601 UTC, to the second."""
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str | None]:
  """The version of each of `PACKAGES` (None: not installed) and python's."""
  out: dict[str, str | None] = {}
  for name in PACKAGES:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = None
  out["python"] = platform.python_version()
  return out


def devices() -> dict[str, Any]:
  """jax's backend, its devices by kind, and the process count."""
  kinds = collections.Counter((d.platform, d.device_kind) for d in jax.devices())
  return {"backend": jax.default_backend(),
          "devices": [{"platform": p, "kind": k, "count": n} for (p, k), n in kinds.items()],
          "device_count": jax.device_count(), "local_device_count": jax.local_device_count(),
          "process_count": jax.process_count()}


def _git_dir(root: pathlib.Path) -> pathlib.Path | None:
  """The git folder of the worktree at ``root`` (``.git`` a folder, or a file ``gitdir: ...``)."""
  dot = root / ".git"
  if dot.is_dir():
    return dot
  if dot.is_file():
    text = dot.read_text().strip()
    if text.startswith("gitdir:"):
      path = pathlib.Path(text[len("gitdir:"):].strip())
      return path if path.is_absolute() else (root / path).resolve()
  return None


def _resolve_ref(git_dir: pathlib.Path, ref: str) -> str | None:
  """The commit a ref names: its loose file, else packed-refs (in the common folder of a worktree)."""
  common = git_dir
  if (git_dir / "commondir").is_file():
    common = (git_dir / (git_dir / "commondir").read_text().strip()).resolve()
  for folder in dict.fromkeys((git_dir, common)):
    loose = folder / ref
    if loose.is_file():
      return loose.read_text().strip() or None
  packed = common / "packed-refs"
  if packed.is_file():
    for line in packed.read_text().splitlines():
      if line and line[0] not in "#^":
        sha, _, name = line.partition(" ")
        if name.strip() == ref:
          return sha
  return None


def _dirty(root: pathlib.Path) -> bool | None:
  """Whether tracked files differ from the commit: ``git status`` (fixed argv, no shell); None if it cannot tell."""
  try:
    done = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, shell=False,
                          capture_output=True, text=True, timeout=10, check=False,
                          env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"})  # read only: no index refresh written
  except (OSError, subprocess.SubprocessError):
    return None
  return bool(done.stdout.strip()) if done.returncode == 0 else None


def git_info(path: str | pathlib.Path) -> dict[str, Any] | None:
  """The git repository holding ``path``: root, commit, branch and dirty flag (None: not in a repository).

  The commit and branch are read from the repository's files (HEAD, refs,
  packed-refs), with no git program; ``dirty`` (tracked files changed, staged
  or not; untracked files do not count) asks ``git status`` through
  `subprocess.run` with a fixed argument list and no shell, the one program
  metarec runs, and is None when git is missing or fails.
  """
  path = pathlib.Path(path).resolve()
  for root in (path, *path.parents):
    git_dir = _git_dir(root)
    if git_dir is None:
      continue
    head = (git_dir / "HEAD").read_text().strip() if (git_dir / "HEAD").is_file() else ""
    if head.startswith("ref:"):
      ref = head[len("ref:"):].strip()
      commit, branch = _resolve_ref(git_dir, ref), ref.removeprefix("refs/heads/")
    else:
      commit, branch = head or None, None  # a detached HEAD
    return {"root": str(root), "commit": commit, "branch": branch, "dirty": _dirty(root)}
  return None


def environment(mode: str = "run") -> dict[str, Any]:
  """Where and how this process runs: one session of env.json, without its times.

  Args:
    mode: what the session does (``run``, ``eval``).
  """
  package = pathlib.Path(__file__).resolve().parent
  cwd = pathlib.Path.cwd()
  pkg_git = git_info(package)
  cwd_git = pkg_git if pkg_git is not None and cwd.resolve().is_relative_to(pkg_git["root"]) else git_info(cwd)
  return {"mode": mode, "command": list(sys.argv), "cwd": str(cwd), "platform": platform.platform(),
          "packages": package_versions(), "jax": devices(), "git": {"package": pkg_git, "cwd": cwd_git}}
