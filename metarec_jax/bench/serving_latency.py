"""``metarec bench serving``: latency of adapting to a new user and ranking every item.

Each call draws a new user's support set (distinct random items and ratings,
a random size in a range), runs `Recommender.adapt` (blocked until the adapted
params are ready) and `Scorer.top_k` over all items (returned to the host).
Warm-up calls come first (they compile); the percentiles are of the timed calls.
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import numpy as np

from metarec_jax.bench.timing import percentile
from metarec_jax.bench.workload import WorkloadSpec, make_workload
from metarec_jax.serving import Recommender


def workload_recommender(spec: WorkloadSpec = WorkloadSpec(learner="melu")) -> Recommender:
  """A recommender over the MeLU-shaped workload (ML-1M's 3,881 items), initial weights."""
  w = make_workload(spec)
  return Recommender(w.model, w.learner, w.meta, w.features, name=f"{spec.learner} (MeLU-shaped, untrained)")


def _stats(values: list[float]) -> dict[str, float]:
  ms = [v * 1e3 for v in values]
  return {"p50": percentile(ms, 50), "p99": percentile(ms, 99), "mean": float(np.mean(ms))}


def bench_serving(rec: Recommender, *, calls: int = 300, support: tuple[int, int] = (5, 20), k: int = 10,
                  warmup: int = 10, seed: int = 0) -> dict[str, Any]:
  """p50 / p99 latency of ``adapt`` + ``top_k`` for new users.

  Args:
    rec: the recommender.
    calls: timed calls.
    support: smallest and largest support size (uniform in between).
    k: items ranked per call.
    warmup: untimed calls first.
    seed: seed of the support sets.

  Returns:
    ``{"adapt_rank_ms": {"p50", "p99", "mean"}, "adapt_ms": {...}, "rank_ms": {...},
    "items", "calls", "support", "k", "method", "load_avg"}``.
  """
  rng = np.random.default_rng(seed)
  lo, hi = support
  users = []
  for _ in range(warmup + calls):
    n = int(rng.integers(lo, hi + 1))
    users.append((rng.choice(rec.num_items, size=n, replace=False), rng.integers(1, 6, size=n)))
  adapt_s, rank_s = [], []
  for i, (items, ratings) in enumerate(users):
    t0 = time.perf_counter()
    scorer = rec.adapt(items, ratings)
    jax.block_until_ready(scorer.params)
    t1 = time.perf_counter()
    scorer.top_k(k)
    t2 = time.perf_counter()
    if i >= warmup:
      adapt_s.append(t1 - t0)
      rank_s.append(t2 - t1)
  total = [a + r for a, r in zip(adapt_s, rank_s)]
  return {"adapt_rank_ms": _stats(total), "adapt_ms": _stats(adapt_s), "rank_ms": _stats(rank_s),
          "items": rec.num_items, "calls": calls, "support": [lo, hi], "k": k, "method": rec.name,
          "item_features_cached": rec.caches_items,
          "load_avg": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None}


def summary(result: dict[str, Any]) -> str:
  a, ad, r = result["adapt_rank_ms"], result["adapt_ms"], result["rank_ms"]
  return (f"serving: {result['method']}, {result['items']:,} items, support {result['support'][0]}..."
          f"{result['support'][1]}, top {result['k']}, {result['calls']} calls\n"
          f"  adapt + rank  p50 {a['p50']:.2f} ms  p99 {a['p99']:.2f} ms\n"
          f"  adapt         p50 {ad['p50']:.2f} ms  p99 {ad['p99']:.2f} ms\n"
          f"  rank          p50 {r['p50']:.2f} ms  p99 {r['p99']:.2f} ms\n"
          f"  load average: {result['load_avg']}")
