"""``metarec bench meta-step``: the engine's meta-train step against PyTorch peers.

The JAX step is compiled first (the compile time is reported on its own), then
it and the peers (when PyTorch is installed) get the same warm-up steps and
are timed in turns on the same machine, in the same process; the result is
the median seconds per step. The peers run on the JAX step's initial weights
and on a task batch drawn the way the JAX step draws its own (the JAX step
draws a fresh batch inside every step: slightly more work, not less). With
``--learner tanp`` (or ``tanp_gating``) the peers are TaNP's (`tanp_peer`).
"""

from __future__ import annotations

import dataclasses
import os
import platform
from typing import Any, Callable

import jax

from metarec_jax.bench.jax_step import JaxMetaStep
from metarec_jax.bench.machine import cpu_peak
from metarec_jax.bench.timing import Runner, interleaved
from metarec_jax.bench.workload import WorkloadSpec, make_workload


def _load() -> list[float] | None:
  try:
    return [round(x, 2) for x in os.getloadavg()]
  except OSError:
    return None


def _with_threads(run: Runner, threads: int) -> Runner:
  """A torch runner that uses ``threads`` intra-op threads while it runs."""
  import torch

  def go(n: int) -> float:
    torch.set_num_threads(threads)
    return run(n)

  return go


def best_threads(run: Runner, candidates: list[int]) -> int:
  """The torch thread count with the fastest two warm steps (small ops often prefer 1)."""
  times = {}
  for threads in candidates:
    go = _with_threads(run, threads)
    go(1)
    times[threads] = go(2)
  return min(times, key=times.get)


def _peer_module(workload):
  """The module of the workload's PyTorch peers: `tanp_peer` for a TaNP method, else `torch_peers` (MeLU)."""
  from metarec_jax.bench import tanp_peer, torch_peers
  return tanp_peer if tanp_peer.handles(workload) else torch_peers


def bench_meta_step(spec: WorkloadSpec, *, repeats: int = 5, peers: bool = True,
                    torch_threads: int = 0, target_s: float = 0.3, chunks: tuple[int, ...] = (),
                    plain: bool = True, log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
  """Times the jitted meta-train step (and the PyTorch peers) on a MeLU-shaped workload.

  Args:
    spec: the workload.
    repeats: timed repeats per framework (the median is reported).
    peers: also time the PyTorch peers when PyTorch is installed.
    torch_threads: PyTorch intra-op threads; 0 picks the faster of 1 and all
      cores for each peer during warm-up.
    target_s: seconds one timed repeat should take (sets steps per repeat).
    chunks: also time the JAX step with these ``tasks_per_chunk`` values (those
      below ``spec.tasks`` that divide it), in the same interleaving.
    plain: when the step uses factored updates (`meta.factored`), also time
      the step that builds every task's adapted kernels (``meta.factored=off``),
      so the algorithm's share of the speed-up is shown apart from the framework's.
    log: progress messages.

  Returns:
    ``{"tasks_per_s", "compile_s", "gflops_per_s", "workload", ...}``: see
    `benchmarks/README.md` for every key.
  """
  from metarec_jax.bench import torch_peers  # imports PyTorch when installed
  load_before = _load()
  log(f"building the workload ({spec.tasks} tasks, {spec.support} support, {spec.query} query, "
      f"{spec.inner_steps} inner steps, {spec.learner})")
  workload = make_workload(spec)
  step = JaxMetaStep(workload, seed=spec.seed)
  log("compiling the JAX step")
  step.compile()
  runners: dict[str, Runner] = {"jax": step.run}
  chunked: dict[int, JaxMetaStep] = {}
  for chunk in chunks:
    if 0 < chunk < spec.tasks and spec.tasks % chunk == 0 and chunk != spec.tasks_per_chunk:
      log(f"compiling the JAX step with tasks_per_chunk={chunk}")
      chunked[chunk] = JaxMetaStep(make_workload(dataclasses.replace(spec, tasks_per_chunk=chunk)),
                                   seed=spec.seed)
      chunked[chunk].compile()
      runners[f"jax_chunk{chunk}"] = chunked[chunk].run
  uses_factored = workload.uses_factored()
  plain_step = None
  if plain and uses_factored:
    log("compiling the JAX step with per-task kernels (meta.factored=off)")
    plain_step = JaxMetaStep(make_workload(dataclasses.replace(spec, factored="off")), seed=spec.seed)
    plain_step.compile()
    runners["jax_plain"] = plain_step.run
  peer_info: dict[str, dict] = {}
  skipped = None
  if peers:
    peer_module = _peer_module(workload)  # TaNP's own peers for --learner tanp, else the MeLU peers
    if not torch_peers.torch_available():
      skipped = torch_peers.TORCH_HINT
    elif peer_module.supported(workload):
      skipped = peer_module.supported(workload)
    else:
      cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
      for name, cls in peer_module.PEERS.items():
        peer = cls(workload)
        candidates = [torch_threads] if torch_threads else sorted({1, cores})
        threads = best_threads(peer.run, candidates) if len(candidates) > 1 else candidates[0]
        runners[name] = _with_threads(peer.run, threads)
        peer_info[name] = {"threads": threads, "thread_candidates": candidates}
  if skipped:
    log(f"PyTorch peers skipped: {skipped}")
  log(f"timing {', '.join(runners)}: {repeats} interleaved repeats after warm-up")
  timings = interleaved(runners, repeats, target_s=target_s)
  jax_s = timings["jax"]["step_s"]
  cpu = cpu_peak()
  gflops = step.flops / jax_s / 1e9 if step.flops else None
  result: dict[str, Any] = {
      "tasks_per_s": spec.tasks / jax_s,
      "compile_s": step.compile_s,
      "gflops_per_s": gflops,
      "workload": {**spec.describe(), "params": workload.num_params(), "uses_factored": uses_factored,
                   "method": workload.method, "inner_steps": workload.learner.inner_steps},
      "step_ms": jax_s * 1e3,
      "flops_per_step": step.flops,
      "flops_method": step.flops_method,
      "peak_gflops_per_s": cpu["peak_gflops_per_s"],
      "share_of_peak": gflops / cpu["peak_gflops_per_s"] if gflops and cpu["peak_gflops_per_s"] else None,
      "xla_peak_memory_mb": step.peak_mb,
      "repeats": repeats,
      "steps_per_repeat": timings["jax"]["steps_per_repeat"],
      "peers": {},
      "machine": {**cpu, "load_avg_before": load_before, "load_avg_after": _load(),
                  "python": platform.python_version(), "jax": jax.__version__,
                  "torch": torch_peers.torch.__version__ if torch_peers.torch_available() else None},
  }
  for name, info in peer_info.items():
    peer_s = timings[name]["step_s"]
    result["peers"][name] = {"tasks_per_s": spec.tasks / peer_s, "step_ms": peer_s * 1e3,
                             "jax_speedup": peer_s / jax_s,
                             "steps_per_repeat": timings[name]["steps_per_repeat"], **info}
    if plain_step is not None:
      result["peers"][name]["plain_jax_speedup"] = peer_s / timings["jax_plain"]["step_s"]
  if plain_step is not None:
    plain_s = timings["jax_plain"]["step_s"]
    result["plain"] = {"tasks_per_s": spec.tasks / plain_s, "step_ms": plain_s * 1e3,
                       "compile_s": plain_step.compile_s, "factored_speedup": plain_s / jax_s,
                       "flops_per_step": plain_step.flops,
                       "xla_peak_memory_mb": plain_step.peak_mb}
  if chunked:
    result["chunked"] = {str(c): {"tasks_per_s": spec.tasks / timings[f"jax_chunk{c}"]["step_s"],
                                  "step_ms": timings[f"jax_chunk{c}"]["step_s"] * 1e3, "compile_s": s.compile_s,
                                  "xla_peak_memory_mb": s.peak_mb}
                         for c, s in chunked.items()}
  if skipped:
    result["peers_skipped"] = skipped
  return result


def summary(result: dict[str, Any]) -> str:
  """A few human-readable lines of a `bench_meta_step` result."""
  w = result["workload"]
  what = "its own model" if w.get("method") else "the decision layers"
  lines = [f"meta-step: {w['learner']} on {what}, {w['tasks']} tasks x ({w['support']} support + "
           f"{w['query']} query), {w['inner_steps']} inner step(s), {w['features']}-wide features, "
           f"{w['params']:,} params"]
  flops = result["gflops_per_s"]
  peak = result["peak_gflops_per_s"]
  share = f" = {100 * result['share_of_peak']:.1f}% of est. peak {peak:.0f}" if result["share_of_peak"] else ""
  lines.append(f"  jax         {result['tasks_per_s']:10,.0f} tasks/s  {result['step_ms']:9.2f} ms/step  "
               f"compile {result['compile_s']:.1f} s  "
               + (f"{flops:.1f} GFLOP/s{share}" if flops else "GFLOP/s unavailable"))
  if "plain" in result:
    p = result["plain"]
    lines.append(f"  jax plain   {p['tasks_per_s']:10,.0f} tasks/s  {p['step_ms']:9.2f} ms/step  "
                 f"compile {p['compile_s']:.1f} s  (per-task kernels, meta.factored=off; "
                 f"factored is {p['factored_speedup']:.1f}x faster)")
  for chunk, c in result.get("chunked", {}).items():
    lines.append(f"  jax chunk{chunk:<4}{c['tasks_per_s']:10,.0f} tasks/s  {c['step_ms']:9.2f} ms/step  "
                 f"compile {c['compile_s']:.1f} s  (meta.tasks_per_chunk={chunk})")
  for name, p in result["peers"].items():
    lines.append(f"  {name:<11} {p['tasks_per_s']:10,.0f} tasks/s  {p['step_ms']:9.2f} ms/step  "
                 f"{p['threads']} thread(s)   jax is {p['jax_speedup']:.1f}x faster"
                 + (f" ({p['plain_jax_speedup']:.1f}x with per-task kernels)" if "plain_jax_speedup" in p else ""))
  if "peers_skipped" in result:
    lines.append(f"  (PyTorch peers skipped: {result['peers_skipped']})")
  m = result["machine"]
  lines.append(f"  machine: {m['model']}, {m['cores']} cores, {m['isa']}; peak estimate: {m['estimate']}; "
               f"load average before/after: {m['load_avg_before']} / {m['load_avg_after']}")
  return "\n".join(lines)
