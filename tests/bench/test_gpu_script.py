"""benchmarks/gpu.py: the one JSON it prints, the workloads it times, errors that do not stop it.

Compiling the steps takes tens of seconds on the shared 2-core CPU, so the
timing (`time_step`, the engine's `JaxMetaStep`, tested in test_scaling /
test_workload) is replaced by a stub that records what it was given.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "gpu.py"
ROW_KEYS = {"compile_s", "ms_per_step", "tasks_per_s", "peak_mb", "tflops_per_s", "params"}


@pytest.fixture
def gpu(monkeypatch):
  spec = importlib.util.spec_from_file_location("benchmarks_gpu", SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  seen = []

  def fake_time_step(workload, repeats, steps):
    seen.append(workload)
    if workload.model.extractor == "fields":
      raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1.00GiB.\nmore")
    return {"compile_s": 0.1, "ms_per_step": 1.0, "tasks_per_s": workload.spec.tasks / 1e-3, "peak_mb": 1.0,
            "tflops_per_s": None, "params": workload.num_params()}

  def fake_time_population(workload, members, steps):
    seen.append(workload)
    return {"members": members, "population_ms": 1.0, "separate_ms": float(members), "first_call_s": 0.1,
            "separate_over_population": float(members)}

  monkeypatch.setattr(module, "time_step", fake_time_step)
  monkeypatch.setattr(module, "time_population", fake_time_population)
  module.seen = seen
  return module


def test_tiny_prints_one_json_with_every_section(gpu, capsys):
  result = gpu.main(["--tiny"])
  out = capsys.readouterr().out
  assert json.loads(out) == json.loads(json.dumps(result))  # stdout is exactly the one JSON object
  assert set(result) >= {"machine", "tiny", "workload", "meta_step", "field_transformer", "population", "ml1m"}
  (pop,) = result["population"]
  assert pop["members"] == 2 and pop["separate_over_population"] == 2.0
  assert any(w.learner.name == "melu" and w.spec.tasks == 4 for w in gpu.seen)  # MeLU's learner, the tiny batch
  assert result["machine"]["backend"] == "cpu" and result["tiny"] is True

  (step,) = result["meta_step"]  # failed (the stub's out-of-memory): recorded, and the rest still ran
  assert step["tasks"] == 4 and step["tasks_per_chunk"] == 0 and not ROW_KEYS & set(step)
  assert step["error"] == "RuntimeError: RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1.00GiB."

  (ft,) = result["field_transformer"]
  assert ft["size"] == "tiny" and ft["dtype"] == "bfloat16" and ft["remat"] is True and ROW_KEYS <= set(ft)
  model = next(w.model for w in gpu.seen if w.model.extractor == "transformer")
  assert model.extractor == "transformer" and model.transformer.remat and model.dtype == gpu.jnp.bfloat16
  assert ft["params"] > gpu.seen[0].num_params()  # the transformer replaced the embedding extractor
  assert "skipped" in result["ml1m"]


def test_full_sizes_and_chunking(gpu):
  assert gpu.TASKS == (32, 128, 512, 2048, 8192, 32768, 65536)
  assert gpu.step_spec(4, 4, tiny=True).tasks_per_chunk == 0 and gpu.step_spec(8, 4, tiny=True).tasks_per_chunk == 4
  assert gpu.step_spec(8192, 8192, tiny=False).tasks_per_chunk == 0
  big = gpu.step_spec(65536, 8192, tiny=False)
  assert big.tasks_per_chunk == 8192 and big.tasks % big.tasks_per_chunk == 0
  assert big.pool == 2 * gpu.ML1M_USERS  # draws with replacement beyond the pool
  assert set(gpu.TRANSFORMER_SIZES) <= set(gpu.SIZES)


def test_unknown_transformer_size_is_refused(gpu):
  with pytest.raises(SystemExit):
    gpu.main(["--tiny", "--transformer-sizes", "huge"])
