"""Peak FLOP/s estimates and the timing helpers (no timings are asserted)."""

from __future__ import annotations

import pytest

from metarec_jax.bench.machine import cpu_peak
from metarec_jax.bench.timing import interleaved, percentile

INTEL = "vendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel name\t: Xeon\ncpu MHz\t\t: 2000.000\nflags\t\t: fma avx2 avx512f\n"
ZEN4 = "vendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel name\t: AMD EPYC\ncpu MHz\t\t: 2500.0\nflags\t\t: fma avx2 avx512f\n"
AVX2 = "vendor_id\t: GenuineIntel\ncpu family\t: 6\ncpu MHz\t\t: 3000.0\nflags\t\t: fma avx avx2\n"


@pytest.mark.parametrize("text,cores,per_cycle,peak", [(INTEL, 2, 64, 256.0), (ZEN4, 2, 32, 160.0),
                                                       (AVX2, 4, 32, 384.0)])
def test_peak_estimate_from_cpuinfo(text, cores, per_cycle, peak):
  info = cpu_peak(text, cores)
  assert info["cores"] == cores and info["flops_per_cycle_per_core"] == per_cycle
  assert info["peak_gflops_per_s"] == pytest.approx(peak)
  assert "FMA" in info["estimate"]


def test_peak_is_none_without_a_clock():
  assert cpu_peak("flags\t: sse2\n", 1)["peak_gflops_per_s"] is None


def test_interleaved_runs_in_turns_with_warmup():
  calls = []

  def runner(name):
    def run(n):
      calls.append((name, n))
      return 0.01 * n
    return run

  out = interleaved({"a": runner("a"), "b": runner("b")}, repeats=3, warmup=2, target_s=0.05)
  assert out["a"]["step_s"] == pytest.approx(0.01) and out["a"]["steps_per_repeat"] == 5
  assert len(out["b"]["repeats"]) == 3
  timed = [c for c in calls if c[1] == 5]
  assert [c[0] for c in timed] == ["a", "b"] * 3  # interleaved
  assert calls[0] == ("a", 2)  # warm-up first


def test_percentile_nearest_rank():
  values = list(range(1, 101))
  assert percentile(values, 50) == 50 and percentile(values, 99) == 99 and percentile(values, 100) == 100
  assert percentile([3.0], 99) == 3.0
