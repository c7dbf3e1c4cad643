"""What the machine can do: core count, vector width and an estimate of peak FLOP/s.

The estimate is ``cores × clock × fp32 lanes × 2 (fused multiply-add) × 2
(FMA pipes per core)``. The clock is the ``cpu MHz`` that ``/proc/cpuinfo``
reports (under a hypervisor often the nominal clock; boost is not counted).
The lanes come from the widest vector extension in the CPU flags: 16 for
``avx512f``, 8 for ``avx2`` + ``fma``, 4 otherwise. AMD family 25 (Zen 3 / 4)
runs AVX-512 on 256-bit datapaths, so it counts 8 lanes there. It is an upper
bound that no real workload reaches; it shows the distance to the limit.
"""

from __future__ import annotations

import os
import platform
import re


def _cpuinfo() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      return f.read()
  except OSError:
    return ""


def _field(text: str, name: str) -> str:
  m = re.search(rf"^{re.escape(name)}\s*:\s*(.*)$", text, re.MULTILINE)
  return m.group(1).strip() if m else ""


def cpu_peak(cpuinfo: str | None = None, cores: int | None = None) -> dict:
  """The CPU, its core count and an estimated fp32 peak (see the module docstring).

  Args:
    cpuinfo: the text of ``/proc/cpuinfo`` (read when None).
    cores: cores this process may use (``sched_getaffinity`` when None).

  Returns:
    ``{"model", "cores", "ghz", "isa", "flops_per_cycle_per_core",
    "peak_gflops_per_s", "estimate"}``; the peak is None when the clock is unknown.
  """
  text = _cpuinfo() if cpuinfo is None else cpuinfo
  if cores is None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
  flags = set(_field(text, "flags").split())
  vendor, family = _field(text, "vendor_id"), _field(text, "cpu family")
  if "avx512f" in flags:
    isa, lanes = "avx512f", 16
    if vendor == "AuthenticAMD" and family == "25":
      isa, lanes = "avx512f (AMD family 25: 256-bit datapaths)", 8
  elif "avx2" in flags and "fma" in flags:
    isa, lanes = "avx2+fma", 8
  else:
    isa, lanes = "sse/other", 4
  mhz = _field(text, "cpu MHz")
  ghz = float(mhz) / 1000 if mhz else None
  per_cycle = lanes * 2 * 2
  peak = cores * ghz * per_cycle if ghz else None
  clock = f"{ghz:.2f} GHz" if ghz else "unknown clock"
  return {
      "model": _field(text, "model name") or platform.processor() or platform.machine(),
      "cores": cores,
      "ghz": ghz,
      "isa": isa,
      "flops_per_cycle_per_core": per_cycle,
      "peak_gflops_per_s": peak,
      "estimate": f"{cores} cores x {clock} x {lanes} fp32 lanes x 2 (FMA) x 2 FMA pipes",
  }
