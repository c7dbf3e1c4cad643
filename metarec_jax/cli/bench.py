"""``metarec bench meta-step | serving``."""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from metarec_jax.config import ConfigError
from metarec_jax.meta.learners import LEARNERS


def _positive(args, *names: str) -> None:
  for name in names:
    value = getattr(args, name)
    if value < 1:
      raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def _write(result: dict, path: str | None) -> None:
  """Writes the result to ``path`` (first, so a closed stdout cannot lose it), then prints it."""
  text = json.dumps(result, indent=1)
  if path:
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(path).write_text(text + "\n")
    print(f"written: {path}", file=sys.stderr)
  print(text)


def _meta_step(args) -> int:
  from metarec_jax.bench.meta_step import bench_meta_step, summary
  from metarec_jax.bench.workload import WorkloadSpec
  _positive(args, "tasks", "support", "query", "repeats")
  if args.inner_steps < 0:
    raise ConfigError(f"--inner-steps must be >= 0, got {args.inner_steps}")
  spec = WorkloadSpec(tasks=args.tasks, support=args.support, query=args.query, inner_steps=args.inner_steps,
                      learner=args.learner, remat=args.remat, tasks_per_chunk=args.tasks_per_chunk,
                      factored=args.factored, seed=args.seed)
  if args.tasks_per_chunk < 0 or (args.tasks_per_chunk and args.tasks % args.tasks_per_chunk):
    raise ConfigError(f"--tasks-per-chunk={args.tasks_per_chunk} must divide --tasks={args.tasks}")
  log = lambda s: print(f"[bench] {s}", file=sys.stderr)
  result = bench_meta_step(spec, repeats=args.repeats, peers=not args.no_peers,
                           torch_threads=args.torch_threads, plain=not args.no_plain, log=log)
  print(summary(result))
  _write(result, args.json)
  return 0


def _serving(args) -> int:
  from metarec_jax.bench.serving_latency import bench_serving, summary, workload_recommender
  from metarec_jax.serving import Recommender
  _positive(args, "calls", "k", "support_min", "support_max")
  if args.support_min > args.support_max:
    raise ConfigError("--support-min must not exceed --support-max")
  if args.workdir:
    rec = Recommender.load(args.workdir, method=args.method, seed=args.seed)
  else:
    rec = workload_recommender()
  result = bench_serving(rec, calls=args.calls, support=(args.support_min, args.support_max), k=args.k)
  print(summary(result))
  _write(result, args.json)
  return 0


def add(sub: argparse._SubParsersAction) -> None:
  bench = sub.add_parser("bench", help="benchmarks: meta-train step throughput, serving latency")
  sub = bench.add_subparsers(dest="bench_command", required=True)
  ms = sub.add_parser(
      "meta-step", help="time the jitted meta-train step on a MeLU-shaped workload (and PyTorch peers)",
      description="Times the engine's jitted meta-train step (after compile, blocked until ready, median of "
      "interleaved repeats) on a MeLU-shaped ML-1M workload; with PyTorch installed "
      "(pip install -e \".[bench]\") also a per-task-loop peer and a torch.func peer.")
  ms.add_argument("--tasks", type=int, default=32, help="tasks per meta-batch (default 32)")
  ms.add_argument("--support", type=int, default=20, help="support ratings per task (default 20)")
  ms.add_argument("--query", type=int, default=10, help="query ratings per task (default 10)")
  ms.add_argument("--inner-steps", type=int, default=1, help="inner SGD steps (default 1)")
  ms.add_argument("--learner", default="maml",
                  help=f"engine learner adapting the decision layers ({', '.join(sorted(LEARNERS))}), or a "
                  "method with a model of its own (e.g. tanp, cmml, coldnas, lwa, nlba, mamo) (default maml)")
  ms.add_argument("--json", metavar="FILE", help="also write the result to FILE")
  ms.add_argument("--repeats", type=int, default=5, help="timed repeats per framework (default 5)")
  ms.add_argument("--no-peers", action="store_true", help="do not run the PyTorch peers")
  ms.add_argument("--torch-threads", type=int, default=0,
                  help="PyTorch threads (default: the faster of 1 and all cores, per peer)")
  ms.add_argument("--remat", action="store_true", help="rematerialise the inner steps")
  ms.add_argument("--tasks-per-chunk", type=int, default=0,
                  help="map over chunks of this many vmapped tasks (the engine's meta.tasks_per_chunk)")
  ms.add_argument("--factored", default="auto", choices=("auto", "on", "off"),
                  help="the engine's meta.factored: factored decision-layer updates where they need fewer "
                  "FLOPs (auto, default), always (on) or never (off: per-task kernels)")
  ms.add_argument("--no-plain", action="store_true",
                  help="do not also time the step with per-task kernels (meta.factored=off)")
  ms.add_argument("--seed", type=int, default=0)
  ms.set_defaults(func=_meta_step)
  sv = sub.add_parser(
      "serving", help="p50 / p99 latency of adapt + rank over all items for new users",
      description="Times Recommender.adapt + Scorer.top_k for new users: a finished run's workdir, or "
      "(default) the MeLU-shaped workload over ML-1M's 3,881 items with untrained weights.")
  sv.add_argument("--workdir", help="a finished `metarec run` workdir (default: the MeLU-shaped workload)")
  sv.add_argument("--method", help="learned method of the run (default: the first)")
  sv.add_argument("--seed", type=int, help="seed of the run (default: the run's seed)")
  sv.add_argument("--calls", type=int, default=300, help="timed calls (default 300)")
  sv.add_argument("--support-min", type=int, default=5, help="fewest support ratings (default 5)")
  sv.add_argument("--support-max", type=int, default=20, help="most support ratings (default 20)")
  sv.add_argument("--k", type=int, default=10, help="items ranked (default 10)")
  sv.add_argument("--json", metavar="FILE", help="also write the result to FILE")
  sv.set_defaults(func=_serving)
