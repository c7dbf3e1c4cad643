"""Kill -9 a run at random moments, rerun the same command, and compare with an uninterrupted run.

The claim under test: a run killed at any moment (training, a checkpoint
write, evaluation, writing ``parts/`` or ``results.json``) and started again
with the same command finishes with a ``results.json`` identical to that of a
run that was never interrupted. `kill_sweep` checks it:

1. the reference: the experiment runs once to the end (``metarec run`` in a
   fresh Python process) and its wall time ``T`` is measured;
2. each kill: the same command starts in a fresh folder, is sent SIGKILL
   after a delay drawn uniformly from ``[0, T]`` (a seeded NumPy generator),
   and is then run again to the end; the rerun's ``results.json`` is
   compared byte for byte with the reference's.

Each kill records what the folder held when it died (checkpoints, parts,
results), i.e. which phase it interrupted. With ``point`` the kill comes
from inside instead, at the n-th arrival at a named fault point
(`metarec_jax.faults`), so a test can hit a checkpoint write or the rename
of ``results.json`` on purpose. Every process shares one JAX compilation
cache folder, so reruns spend their time running, not compiling.

    python benchmarks/kill_sweep.py --kills 50       # the README's figure
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from typing import Callable

import numpy as np

# The quickstart, shrunk: the same methods' kinds (baselines, a pooled model, two meta-learners), two seeds,
# checkpoints and validation every few steps, so every phase of a run lasts long enough to be hit.
EXPERIMENT = '''
"""The quickstart, shrunk for the kill sweep (metarec_jax.bench.kills)."""
from metarec_jax import default_config


def get_config():
  c = default_config()
  c.name = "kills"
  c.methods = {methods!r}
  c.num_seeds = {num_seeds}
  c.data.synthetic.update(dict(num_users=240, num_items=150, latent_dim=3, min_ratings=14, max_ratings=24))
  c.model.embed_dim = 4
  c.model.head_hidden = (8,)
  c.train.steps = {steps}
  c.train.tasks_per_batch = 8
  c.train.eval_every = 5
  c.train.checkpoint_every = 3
  c.train.log_every = 5
  c.eval.tasks_per_chunk = 64
  c.eval.finetune_lrs = (0.01, 0.1)
  c.eval.finetune_steps = (1,)
  c.eval.bias_regs = (0.0, 5.0)
  return c
'''


@dataclasses.dataclass
class Kill:
  """One interrupted run: when it died, what its folder held, and whether the rerun matched."""

  index: int
  delay_s: float | None      # SIGKILL after this many seconds (None: killed at a fault point)
  point: str | None          # the fault point, ``name:n`` (None: a timed kill)
  died: bool                 # the process was still running when the kill came (else it had finished)
  held: dict[str, int]       # what the folder held at the kill: checkpoints, parts, results
  identical: bool            # the rerun's results.json equals the reference byte for byte
  rerun_rc: int


METHODS = ("global_mean", "item_mean_user_bias", "pooled", "maml", "anil")


def write_experiment(folder: pathlib.Path, steps: int = 20, methods: tuple[str, ...] = METHODS,
                     num_seeds: int = 2) -> pathlib.Path:
  """Writes the shrunk quickstart experiment file into ``folder``; returns its path.

  ``methods`` and ``num_seeds`` shrink it further (the tests: one baseline
  and one meta-learner, one seed).
  """
  folder.mkdir(parents=True, exist_ok=True)
  path = folder / "kills_experiment.py"
  path.write_text(EXPERIMENT.format(steps=steps, methods=tuple(methods), num_seeds=num_seeds))
  return path


def _env(cache: pathlib.Path, point: str | None) -> dict[str, str]:
  env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu"),
         "JAX_COMPILATION_CACHE_DIR": str(cache), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
  env.pop("METAREC_KILL_AT", None)
  if point:
    env["METAREC_KILL_AT"] = point
  return env


def _command(experiment: pathlib.Path, workdir: pathlib.Path) -> list[str]:
  return [sys.executable, "-m", "metarec_jax.cli", "run", str(experiment), "--workdir", str(workdir),
          "--no-progress"]


def run_to_end(experiment: pathlib.Path, workdir: pathlib.Path, cache: pathlib.Path,
               point: str | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
  """Runs ``metarec run`` in a fresh process until it exits (``point``: a fault point that may kill it)."""
  return subprocess.run(_command(experiment, workdir), env=_env(cache, point), capture_output=True, text=True,
                        timeout=timeout, check=False)


def held(workdir: pathlib.Path) -> dict[str, int]:
  """What a run folder holds: finished checkpoint steps, parts, and whether results.json exists."""
  steps = [p for p in (workdir / "checkpoints").glob("*/*") if p.is_dir() and p.name.isdigit()]
  return {"checkpoints": len(steps), "parts": len(list((workdir / "parts").glob("*.json"))),
          "results": int((workdir / "results.json").exists())}


def kill_once(index: int, experiment: pathlib.Path, reference: bytes, folder: pathlib.Path,
              cache: pathlib.Path, *, delay_s: float | None = None, point: str | None = None) -> Kill:
  """One kill (after ``delay_s`` seconds, or at fault ``point``) and the rerun; see the module docstring."""
  workdir = folder / f"kill{index:03d}"
  if point is not None:
    first = run_to_end(experiment, workdir, cache, point)
    died = first.returncode == -signal.SIGKILL
  else:
    proc = subprocess.Popen(_command(experiment, workdir), env=_env(cache, None), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
      proc.wait(timeout=delay_s)
      died = False
    except subprocess.TimeoutExpired:
      proc.send_signal(signal.SIGKILL)
      proc.wait()
      died = True
  state = held(workdir)
  again = run_to_end(experiment, workdir, cache)
  out = workdir / "results.json"
  identical = again.returncode == 0 and out.exists() and out.read_bytes() == reference
  if again.returncode:
    sys.stderr.write(f"kill {index}: the rerun failed (exit {again.returncode}):\n{again.stderr[-3000:]}\n")
  return Kill(index, delay_s, point, died, state, identical, again.returncode)


def kill_sweep(folder: pathlib.Path, kills: int, seed: int = 0, steps: int = 20,
               log: Callable[[str], None] = print) -> dict:
  """The reference run, then ``kills`` timed kills with reruns; returns the summary and every kill.

  Args:
    folder: where the experiment file, the run folders and the compilation cache go.
    kills: how many kills.
    seed: seed of the kill delays.
    steps: training steps per learned method (longer runs, finer coverage of training).
    log: called with one line per kill.
  """
  folder.mkdir(parents=True, exist_ok=True)
  cache = folder / "jax_cache"
  experiment = write_experiment(folder, steps)
  run_to_end(experiment, folder / "warmup", cache)  # fills the compilation cache: the timings below are runs
  start = time.perf_counter()
  ref = run_to_end(experiment, folder / "reference", cache)
  wall = time.perf_counter() - start
  if ref.returncode:
    raise RuntimeError(f"the reference run failed:\n{ref.stderr[-3000:]}")
  reference = (folder / "reference" / "results.json").read_bytes()
  log(f"reference run: {wall:.1f} s; killing {kills} runs at uniform times in [0, {wall:.1f}] s")
  rng = np.random.default_rng(seed)
  done = []
  for i in range(kills):
    k = kill_once(i, experiment, reference, folder, cache, delay_s=float(rng.uniform(0.0, wall)))
    done.append(k)
    log(f"kill {i:3d} at {k.delay_s:5.1f} s ({'killed' if k.died else 'had finished'}; held "
        f"{k.held['checkpoints']} checkpoints, {k.held['parts']} parts, results {k.held['results']}): "
        f"{'identical' if k.identical else 'DIFFERENT'}")
  identical = sum(k.identical for k in done)
  summary = {"kills": kills, "identical": identical, "killed_mid_run": sum(k.died for k in done),
             "reference_wall_s": wall, "seed": seed, "steps": steps,
             "kills_detail": [dataclasses.asdict(k) for k in done]}
  log(f"{kills} kills, {identical} identical results ({summary['killed_mid_run']} killed mid-run)")
  return summary


def main(argv: list[str] | None = None) -> int:
  import argparse
  import tempfile
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--kills", type=int, default=50, help="number of kills (default 50)")
  parser.add_argument("--seed", type=int, default=0, help="seed of the kill times (default 0)")
  parser.add_argument("--steps", type=int, default=20, help="training steps per learned method (default 20)")
  parser.add_argument("--folder", help="working folder (default: a temporary one)")
  parser.add_argument("--json", metavar="FILE", help="also write the summary and every kill to FILE")
  args = parser.parse_args(argv)
  folder = pathlib.Path(args.folder or tempfile.mkdtemp(prefix="metarec-kills-"))
  summary = kill_sweep(folder, args.kills, args.seed, args.steps)
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(summary, indent=1))
  return 0 if summary["identical"] == summary["kills"] else 1


if __name__ == "__main__":
  sys.exit(main())
