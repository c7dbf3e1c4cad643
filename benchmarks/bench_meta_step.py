"""Benchmark: the jitted meta-train step against PyTorch peers (same as ``metarec bench meta-step``).

Command:   python benchmarks/bench_meta_step.py [--tasks 32] [--support 20] [--query 10] [--inner-steps 1]
                                                [--learner maml] [--json FILE] [--repeats 5] [--no-peers]
Runtime:   under a minute on a 2-core CPU at the defaults (compile 3-12 s, then interleaved repeats)
Target:    at 32 tasks, >= 10x the per-task-loop PyTorch peer and >= 2x the torch.func peer
Measured:  9.4-11.4x the loop and 2.3-2.4x torch.func at load ~1 on a shared 2-core AMD EPYC
           (4,800-5,600 tasks/s, 35-40 GFLOP/s of an estimated 166); details in benchmarks/README.md
"""

from __future__ import annotations

import sys

from metarec_jax.cli import main

if __name__ == "__main__":
  sys.exit(main(["bench", "meta-step", *sys.argv[1:]]))
