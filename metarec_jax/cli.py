"""The ``metarec`` command line: a thin layer over the library."""

from __future__ import annotations

import argparse
import pathlib
import sys

from metarec_jax import config as cfg_lib


def _run(args) -> int:
  from metarec_jax import experiment
  config = cfg_lib.load_experiment(args.experiment)
  config = cfg_lib.apply_overrides(config, args.set or [])
  if args.seeds is not None:
    config.num_seeds = args.seeds
  cfg_lib.validate(config)
  workdir = args.workdir or str(pathlib.Path("runs") / pathlib.Path(args.experiment).stem)
  experiment.run(config, workdir, progress=not args.no_progress)
  print(f"results: {workdir}/results.json, {workdir}/results.md")
  return 0


def _eval(args) -> int:
  from metarec_jax import experiment
  results = experiment.evaluate_workdir(args.workdir, progress=not args.no_progress, overrides=args.set or ())
  print(f"re-evaluated {len(results['rows'])} rows: {args.workdir}/results.json")
  return 0


def _report(args) -> int:
  from metarec_jax.report import write_report
  files = write_report(args.workdirs, args.out)
  print("wrote " + ", ".join(map(str, files)))
  return 0


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="metarec", description="Meta-learned cold-start recommendation in JAX.")
  sub = parser.add_subparsers(dest="command", required=True)
  run = sub.add_parser("run", help="run an experiment file")
  run.add_argument("experiment", help="path to an experiment file with get_config()")
  run.add_argument("--workdir", help="output folder (default runs/<experiment name>); reruns resume")
  run.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")
  run.add_argument("--seeds", type=int, help="number of seeds (seed, seed+1, ...)")
  run.add_argument("--no-progress", action="store_true", help="no progress bars")
  run.set_defaults(func=_run)
  ev = sub.add_parser("eval", help="re-evaluate a finished run from its checkpoints")
  ev.add_argument("workdir")
  ev.add_argument("--set", action="append", metavar="KEY=VALUE",
                  help="evaluation-only setting: " + ", ".join(cfg_lib.EVAL_ONLY_KEYS))
  ev.add_argument("--no-progress", action="store_true")
  ev.set_defaults(func=_eval)
  rep = sub.add_parser("report", help="merge workdirs into one markdown table and PNG plots")
  rep.add_argument("workdirs", nargs="+")
  rep.add_argument("--out", required=True, help="output folder")
  rep.set_defaults(func=_report)
  from metarec_jax.data.info import add_data_commands
  add_data_commands(sub)
  from metarec_jax.bench.cli import add_bench_command; add_bench_command(sub)
  from metarec_jax.features import add_features_command; add_features_command(sub)
  from metarec_jax.distill import add_distill_command; add_distill_command(sub)
  return parser


def main(argv: list[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  try:
    return args.func(args)
  except (cfg_lib.ConfigError, FileNotFoundError, FloatingPointError, ValueError) as e:
    print(f"metarec: error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
