"""``metarec run | eval | report | distill | config``."""

from __future__ import annotations

import argparse
import pathlib

import ml_collections

from metarec_jax import config as cfg_lib


def _join_processes(args) -> None:
  """``--distributed``: joins the multi-controller runtime before anything touches a device."""
  given = [flag for flag, value in (("--coordinator", args.coordinator), ("--num-processes", args.num_processes),
                                    ("--process-id", args.process_id)) if value is not None]
  if not args.distributed:
    if given:
      raise SystemExit(f"metarec run: {', '.join(given)} need --distributed")
    return
  from metarec_jax import distributed
  distributed.initialize(args.coordinator, args.num_processes, args.process_id)


def resolved_config(args) -> ml_collections.ConfigDict:
  """The config ``metarec run`` would run: the experiment file, ``--set``, ``--seeds``, ``--vectorize``; validated."""
  from metarec_jax.methods import check_overrides_used
  config = cfg_lib.load_experiment(args.experiment)
  overrides = args.set or []
  config = cfg_lib.apply_overrides(config, overrides)
  if getattr(args, "seeds", None) is not None:
    config.num_seeds = args.seeds
  if getattr(args, "vectorize", False):
    config.train.vectorize = True
  cfg_lib.validate(config)
  check_overrides_used(config, [o.split("=", 1)[0].strip() for o in overrides])
  return cfg_lib.canonical(config)


def _run(args) -> int:
  _join_processes(args)
  from metarec_jax import experiment
  config = resolved_config(args)
  workdir = args.workdir or str(pathlib.Path("runs") / pathlib.Path(args.experiment).stem)
  if args.distributed and config.train.devices != 0 and _is_primary():
    print(f"metarec run --distributed: train.devices={config.train.devices}, so the task batch is not sharded over "
          "the processes' devices; add --set train.devices=0 to shard it over all of them")
  experiment.run(config, workdir, progress=not args.no_progress)
  if not args.distributed or _is_primary():
    print(f"results: {workdir}/results.json, {workdir}/results.md")
  return 0


def _is_primary() -> bool:
  from metarec_jax.distributed import is_primary
  return is_primary()


def _eval(args) -> int:
  from metarec_jax import experiment
  results = experiment.evaluate_workdir(args.workdir, progress=not args.no_progress, overrides=args.set or ())
  print(f"re-evaluated {len(results['rows'])} rows: {args.workdir}/results.json")
  return 0


def _config(args) -> int:
  config = resolved_config(args)
  if args.json:
    print(cfg_lib.to_json(config))
    return 0
  for key, value in cfg_lib.flat_keys(config).items():
    if key == "variants":
      value = {name: cfg_lib.variant_entries(config, name) for name in config.variants}
    print(f"{key} = {value!r}")
  return 0


def _report(args) -> int:
  from metarec_jax.report import write_report
  files = write_report(args.workdirs, args.out)
  print("wrote " + ", ".join(map(str, files)))
  return 0


def _distill(args) -> int:
  from metarec_jax.methods.distill import distill_workdir
  distill_workdir(args.workdir, args.student, teacher=args.teacher, seed=args.seed, steps=args.steps, lr=args.lr,
                  pred_weight=args.pred_weight, progress=not args.no_progress)
  return 0


def add(sub: argparse._SubParsersAction) -> None:
  run = sub.add_parser("run", help="run an experiment file")
  run.add_argument("experiment", help="path to an experiment file with get_config()")
  run.add_argument("--workdir", help="output folder (default runs/<experiment name>); reruns resume")
  run.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key (repeatable); a key no method uses is refused")
  run.add_argument("--seeds", type=int, help="number of seeds (seed, seed+1, ...; default: the experiment's num_seeds)")
  run.add_argument("--vectorize", action="store_true",
                   help="train each learned method's seeds, and variants that differ only in optimizer.lr / "
                        "meta.inner_lr, as one vmapped program (train.vectorize=true)")
  run.add_argument("--no-progress", action="store_true", help="no progress bars")
  multi = run.add_argument_group(
      "many processes (docs/multihost.md)",
      "Start the same command on every process; the task batch is sharded over all their devices "
      "(--set train.devices=0) and process 0 writes the workdir (on a shared file system). Not part of the config.")
  multi.add_argument("--distributed", action="store_true",
                     help="join jax.distributed first (TPU pods, Slurm and Open MPI need no other flag)")
  multi.add_argument("--coordinator", metavar="HOST:PORT",
                     help="process 0's address and a free port (default: $JAX_COORDINATOR_ADDRESS or detected)")
  multi.add_argument("--num-processes", type=int, metavar="N", help="number of processes (default: detected)")
  multi.add_argument("--process-id", type=int, metavar="I", help="this process, 0 .. N-1 (default: detected)")
  run.set_defaults(func=_run, resumable=True)
  shown = sub.add_parser("config", help="print the resolved config of an experiment file without running it",
                         description="Prints every key of the config `metarec run` would use (the experiment file, "
                         "then --set), one `key = value` per line, after validation; nothing is run or written.")
  shown.add_argument("experiment", help="path to an experiment file with get_config()")
  shown.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")
  shown.add_argument("--seeds", type=int, help="number of seeds (default: the experiment's num_seeds)")
  shown.add_argument("--json", action="store_true", help="print the config as JSON (as config.json stores it)")
  shown.set_defaults(func=_config)
  ev = sub.add_parser("eval", help="re-evaluate a finished run from its checkpoints")
  ev.add_argument("workdir")
  ev.add_argument("--set", action="append", metavar="KEY=VALUE",
                  help="evaluation-only setting: " + ", ".join(cfg_lib.EVAL_ONLY_KEYS))
  ev.add_argument("--no-progress", action="store_true")
  ev.set_defaults(func=_eval, resumable=True)
  rep = sub.add_parser("report", help="merge workdirs into one markdown table and PNG plots")
  rep.add_argument("workdirs", nargs="+")
  rep.add_argument("--out", required=True, help="output folder")
  rep.set_defaults(func=_report)
  d = sub.add_parser("distill", help="train a small extractor to match a run's meta-learned extractor")
  d.add_argument("workdir", help="a finished run (metarec run ... --workdir)")
  d.add_argument("--student", required=True, help="file with get_config(teacher_config) -> the student's config")
  d.add_argument("--teacher", default="", help="learned method to distil (default: the last one with a checkpoint)")
  d.add_argument("--seed", type=int, help="which seed's checkpoint (default: the run's first seed)")
  d.add_argument("--steps", type=int, default=500, help="student training steps (default 500)")
  d.add_argument("--lr", type=float, default=3e-3, help="student Adam rate (default 3e-3)")
  d.add_argument("--pred-weight", type=float, default=1.0,
                 help="weight of the adapted-prediction loss (default 1.0)")
  d.add_argument("--no-progress", action="store_true")
  d.set_defaults(func=_distill, resumable=True)
