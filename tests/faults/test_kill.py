"""kill -9 at the fault points (`metarec_jax.faults`): the rerun's results.json equals an uninterrupted run's.

Each run is a fresh ``metarec run`` process (`metarec_jax.bench.kills`); all
share one JAX compilation cache folder. The timed sweep over random moments
is `benchmarks/kill_sweep.py` (too slow for the tests).
"""

from __future__ import annotations

import pytest

from metarec_jax import faults
from metarec_jax.bench import kills

# checkpoint:2 — maml's second orbax save has started, not finished (checkpoints every 3 of 6 steps);
# write:3 — a run-folder file (env.json) is written to its temporary name, not yet renamed;
# results:1 — every part is on disk, results.json is about to be written.
# The `part` point (a finished method x seed about to be recorded) is left to the kill sweep
# (benchmarks/kill_sweep.py): a part is written by the same write_text whose temporary-name-then-rename
# window `write` kills in, and each subprocess here costs the suite about 8 s.
POINTS = ("checkpoint:2", "write:3", "results:1")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  folder = tmp_path_factory.mktemp("kills")
  experiment = kills.write_experiment(folder, steps=6, methods=("global_mean", "maml"), num_seeds=1)
  cache = folder / "jax_cache"
  ref = kills.run_to_end(experiment, folder / "reference", cache, timeout=300)
  assert ref.returncode == 0, ref.stderr[-3000:]
  return folder, experiment, cache, (folder / "reference" / "results.json").read_bytes()


def test_points_are_the_documented_ones():
  assert {p.split(":")[0] for p in POINTS} | {"part"} == set(faults.POINTS)


@pytest.mark.parametrize("point", POINTS)
def test_a_kill_at_a_fault_point_then_a_rerun_gives_identical_results(reference, point):
  folder, experiment, cache, ref = reference
  index = POINTS.index(point)
  k = kills.kill_once(index, experiment, ref, folder, cache, point=point)
  assert k.died, f"the run was not killed at {point} (it passed it fewer times)"
  assert k.held["results"] == 0
  assert k.rerun_rc == 0 and k.identical, f"{point}: the rerun's results.json differs (exit {k.rerun_rc})"
  workdir = folder / f"kill{index:03d}"
  assert not (workdir / "lock").exists()  # released by the rerun (the killed run's stale lock was taken over)
  assert not list(workdir.glob(".*.tmp*"))

