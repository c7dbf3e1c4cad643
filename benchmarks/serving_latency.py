"""Benchmark: p50 / p99 latency of adapting to a new user and ranking all items (``metarec bench serving``).

Command:   python benchmarks/serving_latency.py [--workdir RUN] [--calls 300] [--support-min 5]
                                                [--support-max 20] [--k 10] [--json FILE]
Runtime:   under a minute on a 2-core CPU
Target:    adapt + rank over all ML-1M items under 5 ms p50
Measured:  p50 1.4-1.5 ms, p99 2.0-2.6 ms at load ~1.4 on a shared 2-core AMD EPYC (README.md)

Without --workdir it serves the MeLU-shaped model (ML-1M's 3,881 items and
MeLU's vocabularies, untrained weights: latency does not depend on them); with
--workdir a finished ``metarec run`` (`Recommender.load`).
"""

from __future__ import annotations

import sys

from metarec_jax.cli import main

if __name__ == "__main__":
  sys.exit(main(["bench", "serving", *sys.argv[1:]]))
