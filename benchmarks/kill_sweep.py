"""Kill -9 a shrunk quickstart run at random moments, rerun it, and compare with an uninterrupted run.

Command:   python benchmarks/kill_sweep.py --kills 50 [--seed 0] [--json FILE]
Runtime:   about 30 s per kill on a 2-core CPU (a kill and its rerun), so about 25 minutes for 50.
Expected:  "50 kills, 50 identical results": every rerun's results.json equals the uninterrupted run's,
           byte for byte (metarec_jax.bench.kills).
"""

import sys

from metarec_jax.bench.kills import main

if __name__ == "__main__":
  sys.exit(main())
