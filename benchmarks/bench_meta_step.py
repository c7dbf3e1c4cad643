"""Benchmark: the jitted meta-train step against PyTorch peers (same as ``metarec bench meta-step``).

Command:   python benchmarks/bench_meta_step.py [--tasks 32] [--support 20] [--query 10] [--inner-steps 1]
                                                [--learner maml] [--json FILE] [--repeats 5] [--no-peers]
Runtime:   about 1 minute on a 2-core CPU at the defaults (compile ~10 s, then interleaved repeats)
Target:    at 32 tasks, >= 10x the per-task-loop PyTorch peer and >= 2x the torch.func peer
Measured:  see benchmarks/README.md
"""

from __future__ import annotations

import sys

from metarec_jax.cli import main

if __name__ == "__main__":
  sys.exit(main(["bench", "meta-step", *sys.argv[1:]]))
