"""Benchmark: cost growth of training, evaluation and loading against users and items.

Command:   python benchmarks/cost_growth.py [--users 10000,30000,...] [--items 10000,...]
                                            [--item-ids] [--no-load] [--no-eval] [--out runs/bench]
Goal:      linear or better in users; flat in catalogue size for training (issue 15).

Each (users, items) point runs in a fresh process (`metarec_jax.bench.growth`):
ML-25M-shaped ratings (mean 40 per user, at least 20, heavy tail), one task
per user (the 100 most recent ratings), the MeLU-shaped model of
``bench/workload.py``; it measures the engine's meta-step (median ms, XLA's
peak memory of the compiled step), adapting and scoring every user in chunks
(seconds, XLA's peak memory of one chunk), and reading the ratings back from
ML-25M's ``ratings.csv`` format (seconds, peak RSS of the reading process).
``--users`` sweeps users at ``--base-items`` items; ``--items`` sweeps items
at ``--base-users`` users; ``--item-ids`` also times the items sweep with an
item id embedding in the model. Results merge into ``OUT/growth.json``;
``OUT/growth.md`` and ``OUT/growth.png`` are redrawn from all points.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import time


def _ints(text: str) -> tuple[int, ...]:
  return tuple(int(float(v)) for v in text.split(",") if v.strip()) if text else ()


def main(argv: list[str] | None = None) -> int:
  from metarec_jax.bench import growth
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--users", default=",".join(map(str, growth.USERS)), help="users sweep (empty: skip)")
  parser.add_argument("--items", default=",".join(map(str, growth.ITEMS)), help="items sweep (empty: skip)")
  parser.add_argument("--base-users", type=int, default=growth.BASE_USERS)
  parser.add_argument("--base-items", type=int, default=growth.BASE_ITEMS)
  parser.add_argument("--item-ids", action="store_true", help="also time the items sweep with an item id embedding")
  parser.add_argument("--no-load", action="store_true", help="skip the loading measurement")
  parser.add_argument("--no-eval", action="store_true", help="skip the evaluation of all users")
  parser.add_argument("--load-max-users", type=int, default=1_000_000,
                      help="measure loading only up to this many users")
  parser.add_argument("--steps", type=int, default=20, help="timed meta-steps per repeat")
  parser.add_argument("--out", default="runs/bench", help="folder of growth.json / .md / .png")
  args = parser.parse_args(argv)

  base = growth.GrowthSpec(users=args.base_users, items=args.base_items, steps=args.steps,
                           evaluate=not args.no_eval, load=not args.no_load)
  points = [dataclasses.replace(base, users=u) for u in _ints(args.users)]
  points += [dataclasses.replace(base, items=i) for i in _ints(args.items)
             if (args.base_users, i) not in {(p.users, p.items) for p in points}]
  if args.item_ids:
    points += [dataclasses.replace(base, items=i, item_ids=True, evaluate=False, load=False)
               for i in _ints(args.items)]
  points = [dataclasses.replace(p, load=p.load and p.users <= args.load_max_users) for p in points]
  out = pathlib.Path(args.out)
  from metarec_jax.bench.machine import cpu_peak
  cpu = cpu_peak()
  meta = {"machine": f"{cpu['model']}, {cpu['cores']} cores", "base_users": args.base_users, "base_items": args.base_items,
          "workload": (f"MeLU-shaped model, {base.tasks} tasks x ({base.support} support + {base.query} query), "
                       f"1 inner step; tasks = every user's {base.max_task} most recent ratings; "
                       f"mean {base.mean_history} ratings per user (>= {base.min_history})")}
  for p in points:
    print(f"users={p.users:,} items={p.items:,}{' +ids' if p.item_ids else ''} ...", flush=True)
    start = time.perf_counter()
    row = growth.run_point(p)
    growth.update(out, [row], meta)
    print(f"  step {row['step_ms']:.2f} ms ({row['step_xla_mb']:.1f} MB XLA)"
          + (f", eval {row['eval_s']:.1f} s ({row['eval_users_per_s']:,.0f} users/s)" if "eval_s" in row else "")
          + (f", read {row['load_read_s']:.1f} s ({row['load_peak_rss_mb']:,.0f} MB peak RSS)"
             if "load_read_s" in row else "")
          + f", point peak RSS {row['peak_rss_mb']:,.0f} MB; {time.perf_counter() - start:.0f} s", flush=True)
  print(f"wrote {out / 'growth.json'}, {out / 'growth.md'}, {out / 'growth.png'}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
