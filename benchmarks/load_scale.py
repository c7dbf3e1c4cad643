"""Benchmark: read an ML-25M-shaped ``ratings.csv`` (25M ratings) into `Interactions`; time and peak memory.

Command:   python benchmarks/load_scale.py [--scale 1.0] [--seed 0] [--tmp DIR] [--json]
Target:    25M ratings in well under a minute within a few GB (issue 15).
Measured:  14-17 s and 1.5 GB peak RSS (208 MB of it before reading) on a quiet 2-core machine; 31 s
           when other jobs shared the cores (benchmarks/README.md, "Loading at 25M").

Steps: `make_scaled("ml-25m", scale)` generates the ratings (about 162k
users, 59k items, 25M half-star ratings, >= 20 per user, heavy-tailed),
`movielens.write_ratings_csv` writes them to a temporary folder as ML-25M's
``ratings.csv`` (header ``userId,movieId,rating,timestamp``, sorted by user
then movie), and a fresh Python process reads the folder with
`movielens.load_movielens` (every check of the reader: scale, duplicates) and
groups the ratings into one padded task per user (the 100 most recent,
`bench.growth.recent_taskset`). Read time and peak RSS (``VmHWM``, `bench.growth.peak_rss_mb`) are
the child's own; its RSS before reading (interpreter, numpy, JAX imported)
is reported beside it. The read values are compared with the written ones.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--scale", type=float, default=1.0, help="share of ML-25M's size (default 1.0: 25M ratings)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--tmp", default=None, help="folder for the temporary ratings.csv (default: the system's)")
  parser.add_argument("--json", action="store_true", help="print the measurements as JSON")
  args = parser.parse_args(argv)

  import numpy as np

  from metarec_jax.bench.growth import peak_rss_mb
  from metarec_jax.data.movielens import write_ratings_csv
  from metarec_jax.data.synthetic import make_scaled

  start = time.perf_counter()
  data = make_scaled("ml-25m", args.scale, args.seed)
  gen_s = time.perf_counter() - start
  inter = data.interactions
  out = {"ratings": len(inter), "users": data.num_users, "items": data.num_items, "generate_s": gen_s}
  with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
    folder = pathlib.Path(tmp) / "ml-25m"
    folder.mkdir()
    start = time.perf_counter()
    path = write_ratings_csv(folder / "ratings.csv", inter.user.astype(np.int64) + 1,
                             inter.item.astype(np.int64) + 1, inter.rating, inter.timestamp)
    out["write_s"] = time.perf_counter() - start
    out["csv_mb"] = path.stat().st_size / 2**20
    out["generate_peak_rss_mb"] = peak_rss_mb()
    child = subprocess.run([sys.executable, __file__, "--read", str(folder)], capture_output=True, text=True)
    if child.returncode:
      print(child.stderr, file=sys.stderr)
      return child.returncode
    read = json.loads(child.stdout.strip().splitlines()[-1])
  # The child returns checksums of what it read; compare with what was written.
  expect = {"rating_sum": float(inter.rating.astype(np.float64).sum()),
            "user_sum": int(inter.user.astype(np.int64).sum()),
            "item_raw_sum": int(inter.item.astype(np.int64).sum() + len(inter))}
  read["matches_written"] = (read["ratings"] == len(inter) and abs(read["rating_sum"] - expect["rating_sum"]) < 1e-3
                             and read["user_sum"] == expect["user_sum"]
                             and read["item_raw_sum"] == expect["item_raw_sum"])
  out.update({k if k.startswith("read") else f"read_{k}": v for k, v in read.items()})
  if args.json:
    print(json.dumps(out, indent=1))
  else:
    print(f"{out['ratings']:,} ratings ({out['users']:,} users, {out['items']:,} items), "
          f"ratings.csv {out['csv_mb']:,.0f} MiB; generated in {gen_s:.1f} s, written in {out['write_s']:.1f} s")
    print(f"read: {read['read_s']:.1f} s (load_movielens, all checks), task set {read['taskset_s']:.1f} s; "
          f"peak RSS {read['read_peak_rss_mb']:,.0f} MiB after reading, {read['peak_rss_mb']:,.0f} MiB after the "
          f"task set ({read['base_rss_mb']:,.0f} MiB before reading); values match what was written: "
          f"{read['matches_written']}")
  return 0 if read["matches_written"] else 1


def read(folder: str) -> dict:
  """The child: read the folder, build the task set, report times, peak RSS and checksums."""
  import warnings

  import numpy as np

  from metarec_jax.bench.growth import peak_rss_mb, recent_taskset
  from metarec_jax.data.movielens import load_movielens
  base = peak_rss_mb()
  start = time.perf_counter()
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    data = load_movielens(folder)
  read_s = time.perf_counter() - start
  read_peak = peak_rss_mb()
  start = time.perf_counter()
  tasks = recent_taskset(data.interactions, data.num_users, 100)
  tasks_s = time.perf_counter() - start
  inter = data.interactions
  return {"read_s": read_s, "taskset_s": tasks_s, "base_rss_mb": base, "read_peak_rss_mb": read_peak,
          "peak_rss_mb": peak_rss_mb(),
          "ratings": len(inter), "tasks": len(tasks.user), "name": data.name,
          "rating_sum": float(inter.rating.astype(np.float64).sum()),
          "user_sum": int(data.user_raw_ids[inter.user].sum() - len(inter)),
          "item_raw_sum": int(data.item_raw_ids[inter.item].sum())}


if __name__ == "__main__":
  if len(sys.argv) == 3 and sys.argv[1] == "--read":
    print(json.dumps(read(sys.argv[2])))
    sys.exit(0)
  sys.exit(main())
