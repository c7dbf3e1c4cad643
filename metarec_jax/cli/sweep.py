"""``metarec sweep``: grid, random and TPE search over config keys, chosen on validation users (`metarec_jax.sweep`)."""

from __future__ import annotations

import argparse
import pathlib
import shlex

from metarec_jax import config as cfg_lib

SYNTAX = """\
VALUES of --grid KEY=VALUES:
  a,b,c               these values (';' between values of a tuple key: 'model.head_hidden=64,64;128')
  log:LO:HI           log-uniform range (--random / --tpe; draws rounded to 3 significant digits)
  uniform:LO:HI       uniform range (--random / --tpe)
  log:LO:HI:N         N log-spaced values LO..HI (any search); uniform:LO:HI:N: N evenly spaced
  int:LO:HI           the integers LO..HI (any search)

Each trial is a run folder under the sweep folder, named from its values; a
rerun skips finished trials and resumes a half-run one. The best trial has
the lowest validation value (val_mae; 1-AUC for implicit feedback) of the
tuned method, which trains alone in each trial; test metrics are reported in
sweep.md / sweep.json, never used to choose. See docs/sweeps.md."""


def _sweep(args) -> int:
  from metarec_jax.sweep import SWEEP_JSON, SWEEP_MD, run_sweep
  for flag, n in (("--random", args.random), ("--tpe", args.tpe)):
    if n is not None and n < 1:
      raise ValueError(f"{flag} {n}: the number of trials must be >= 1")
  config = cfg_lib.load_experiment(args.experiment)
  if args.seeds is not None:
    config.num_seeds = args.seeds
  workdir = args.workdir or str(pathlib.Path("runs") / f"{pathlib.Path(args.experiment).stem}-sweep")
  result = run_sweep(config, args.grid, workdir, overrides=args.set or (), random=args.random or 0,
                     tpe=args.tpe or 0, seed=args.seed, method=args.method, vectorize=args.vectorize,
                     progress=not args.no_progress)
  print()
  print(result.markdown())
  print(f"report: {workdir}/{SWEEP_MD}, {workdir}/{SWEEP_JSON}")
  if result.best is not None:
    print(f"the whole experiment with the best values: {result.best_command(shlex.quote(args.experiment))}")
  return 0


def add(sub: argparse._SubParsersAction) -> None:
  """Registers ``metarec sweep``."""
  from metarec_jax.cli import HelpFormatter

  class Formatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in every help, and the epilog's layout kept."""

  sw = sub.add_parser("sweep", help="search hyperparameters of one method (grid, random, TPE), chosen on validation",
                      description="Trains one method of an experiment once per setting of the --grid keys\n"
                      "and picks the setting with the lowest validation value.",
                      epilog=SYNTAX, formatter_class=Formatter)
  sw.add_argument("experiment", help="path to an experiment file with get_config()")
  sw.add_argument("--grid", action="append", required=True, metavar="KEY=VALUES",
                  help="a searched key and its values or range (repeatable; syntax below); grid search takes "
                       "the Cartesian product")
  how = sw.add_mutually_exclusive_group()
  how.add_argument("--random", type=int, metavar="N", help="random search: N distinct trials drawn from the "
                   "--grid values and ranges (default: grid search)")
  how.add_argument("--tpe", type=int, metavar="N", help="TPE search (optuna, pip install metarec-jax[sweep]): "
                   "N trials in all, each proposed from the scores so far (default: grid search)")
  sw.add_argument("--seed", type=int, default=0,
                  help="seed of the random / TPE draws (the training seed is --set seed=...)")
  sw.add_argument("--method", help="the method to tune (default: the experiment's last learned method)")
  sw.add_argument("--workdir", help="the sweep folder (default runs/<experiment name>-sweep); reruns resume")
  sw.add_argument("--set", action="append", metavar="KEY=VALUE",
                  help="override a config key in every trial (repeatable)")
  sw.add_argument("--seeds", type=int,
                  help="seeds per trial (the score is their mean; default: the experiment's num_seeds)")
  sw.add_argument("--vectorize", action="store_true",
                  help="train the trials as one vmapped program when every --grid key is optimizer.lr or "
                       "meta.inner_lr (grid and --random)")
  sw.add_argument("--no-progress", action="store_true", help="no progress bars")
  sw.set_defaults(func=_sweep, resumable=True)
