"""Benchmark: the jitted meta-train step against PyTorch peers (same as ``metarec bench meta-step``).

Command:   python benchmarks/bench_meta_step.py [--tasks 32] [--support 20] [--query 10] [--inner-steps 1]
                                                [--learner maml] [--json FILE] [--repeats 5] [--no-peers]
                                                [--factored auto|on|off] [--no-plain]
Runtime:   under a minute on a 2-core CPU at the defaults (two compiles of 3-4 s, then interleaved repeats)
Target:    at 32 tasks, >= 10x the per-task-loop PyTorch peer and >= 2x the torch.func peer
Measured:  19-25x the loop and 4.5-4.7x torch.func at load ~1.5 on a shared 2-core AMD EPYC
           (9,300-12,100 tasks/s, 34-44 GFLOP/s of an estimated 166; the same step with per-task
           kernels, meta.factored=off: 9-16x and 2.1-3.0x); details in benchmarks/README.md
"""

from __future__ import annotations

import sys

from metarec_jax.cli import main

if __name__ == "__main__":
  sys.exit(main(["bench", "meta-step", *sys.argv[1:]]))
