"""Honest timing: warm-up first, interleaved repeats, medians, percentiles.

A runner is a callable ``run(n) -> seconds`` that performs ``n`` steps and
returns their wall time, blocked until the results are ready. Runners of the
frameworks compared are timed in turns (A, B, C, A, B, C, ...) so that noise
from other processes on the machine falls on all of them alike.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Callable, Mapping

Runner = Callable[[int], float]


def timed(fn: Callable[[], object]) -> float:
  """Seconds one call of ``fn`` takes (``fn`` must block until its work is done)."""
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def steps_for(runner: Runner, target_s: float, max_steps: int = 1000) -> int:
  """Steps per timed repeat so that a repeat takes about ``target_s`` (at least 1)."""
  one = runner(1)
  return max(1, min(max_steps, int(target_s / max(one, 1e-9))))


def interleaved(runners: Mapping[str, Runner], repeats: int, *, warmup: int = 2,
                target_s: float = 0.3) -> dict[str, dict]:
  """Median seconds per step of each runner, timed in turns.

  Every runner gets ``warmup`` untimed steps, then ``repeats`` timed repeats of
  ``n`` steps each, ``n`` chosen per runner so that a repeat takes about
  ``target_s``.

  Returns:
    name -> ``{"step_s": median seconds per step, "steps_per_repeat": n,
    "repeats": [seconds per step of each repeat]}``.
  """
  counts = {}
  for name, run in runners.items():
    run(warmup) if warmup else None
    counts[name] = steps_for(run, target_s)
  per_step = {name: [] for name in runners}
  for _ in range(repeats):
    for name, run in runners.items():
      per_step[name].append(run(counts[name]) / counts[name])
  return {name: {"step_s": statistics.median(v), "steps_per_repeat": counts[name], "repeats": v}
          for name, v in per_step.items()}


def percentile(values: list[float], q: float) -> float:
  """The ``q``-th percentile (0..100) by the nearest-rank method."""
  ordered = sorted(values)
  rank = max(1, math.ceil(q / 100 * len(ordered)))
  return ordered[rank - 1]
