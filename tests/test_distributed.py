"""Two local CPU processes (2 emulated devices each) train as one run (`metarec_jax.distributed`)."""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from metarec_jax import distributed

WORKER = pathlib.Path(__file__).with_name("distributed_worker.py")
TIMEOUT_S = 90  # a hang (a process waiting for its peer) fails here, with the workers' output


def _has_cpu_collectives() -> bool:
  try:
    return jax.config.jax_cpu_collectives_implementation is not None
  except AttributeError:
    return False


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _start(workdir: pathlib.Path, devices: int, *args: str) -> subprocess.Popen:
  env = dict(os.environ)
  env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = os.pathsep.join([str(WORKER.parent.parent), env.get("PYTHONPATH", "")])
  return subprocess.Popen([sys.executable, str(WORKER), str(workdir), *args], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def _finish(procs: dict[str, subprocess.Popen]) -> dict[str, str]:
  """Waits for every process; fails with all their output if one fails or hangs."""
  outputs, failed = {}, []
  for name, p in procs.items():
    try:
      outputs[name] = p.communicate(timeout=TIMEOUT_S)[0]
    except subprocess.TimeoutExpired:
      for q in procs.values():
        q.kill()
      outputs[name] = p.communicate()[0] + f"\n[killed after {TIMEOUT_S} s]"
    if p.returncode != 0:
      failed.append(name)
  if failed:
    text = "\n".join(f"--- {n} (exit {procs[n].returncode}):\n{outputs.get(n, '')[-3000:]}" for n in procs)
    pytest.fail(f"{', '.join(failed)} failed:\n{text}")
  return outputs


def _log_lines(workdir: pathlib.Path) -> list[dict]:
  lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  for line in lines:
    line.pop("tasks_per_s", None)  # wall time
  return lines


def _reference(workdir: pathlib.Path) -> None:
  """The worker's one-process run, here in the test's process (its devices: usually one CPU)."""
  spec = importlib.util.spec_from_file_location("distributed_worker", WORKER)
  worker = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(worker)
  assert worker.main([str(workdir)]) == 0


@pytest.mark.skipif(not _has_cpu_collectives(), reason=f"jaxlib {jax.__version__} has no CPU collectives (gloo)")
def test_two_processes_train_like_one(tmp_path):
  """Same params as one process; one writer; checkpoints resume on both processes."""
  one, two = tmp_path / "one", tmp_path / "two"
  port = _free_port()
  procs = {f"process {i} of 2": _start(two, 2, f"127.0.0.1:{port}", "2", str(i)) for i in range(2)}
  try:
    _reference(one)  # while the two processes run
  finally:
    out = _finish(procs)
  assert "writer True" in out["process 0 of 2"] and "writer False" in out["process 1 of 2"]

  ref, got = np.load(one / "params.npz"), np.load(two / "params.npz")
  assert int(got["devices"]) == 4 and int(ref["devices"]) == jax.device_count()
  assert int(got["step"]) == int(ref["step"]) == 3  # 2 steps, then resumed from the step-2 checkpoint to 3
  assert sorted(ref.files) == sorted(got.files)
  params = [k for k in ref.files if k.startswith("['")]
  assert len(params) >= 2 * 6  # final and selected: embeddings and head kernels and biases
  for k in params:
    np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, atol=1e-6, err_msg=k)

  # process 0 alone wrote the run folder: the same files and log lines as the one-process run, none twice
  files = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*")
                           if p.is_file() and not {"checkpoints", "tensorboard"} & set(p.parts))
  assert files(two) == files(one) == ["config.json", "metrics.jsonl", "params.npz",
                                      "parts/maml__seed0.json", "results.json", "results.md"]
  events = lambda d: list((d / "tensorboard" / "maml__seed0").glob("events.out.tfevents.*"))
  assert len(events(two)) == len(events(one)) == 1  # process 0 alone writes TensorBoard's events
  # the same config; the reference ran in this process, where other test modules may have registered methods
  # with config blocks of their own, so it may hold more blocks (never other keys)
  from metarec_jax.methods.registry import config_blocks
  got_cfg, ref_cfg = (json.loads((d / "config.json").read_text()) for d in (two, one))
  assert {k: ref_cfg[k] for k in got_cfg} == got_cfg and set(ref_cfg) - set(got_cfg) <= set(config_blocks())
  ref_log, got_log = _log_lines(one), _log_lines(two)
  assert [(r["step"], sorted(r)) for r in got_log] == [(r["step"], sorted(r)) for r in ref_log]
  np.testing.assert_allclose([r.get("loss", r.get("val_mae")) for r in got_log],
                             [r.get("loss", r.get("val_mae")) for r in ref_log], rtol=1e-5)
  assert sorted(p.name for p in (two / "checkpoints" / "maml__seed0").iterdir()) == ["2", "3"]  # the two latest (train.loop keeps two)


def test_replicate_global_and_to_local_on_one_process():
  """The helpers' one-process paths: arrays land on the mesh and come back unchanged."""
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("tasks",))
  tree = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "key": jax.random.key(3)}
  out = distributed.replicate_global(tree, mesh)
  assert out["w"].sharding == jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  np.testing.assert_array_equal(distributed.to_local(out)["w"], tree["w"])
  np.testing.assert_array_equal(jax.random.key_data(out["key"]), jax.random.key_data(tree["key"]))
  rows = distributed.shard_global({"x": np.arange(4)}, mesh, "tasks")
  np.testing.assert_array_equal(np.asarray(rows["x"]), np.arange(4))
  with pytest.raises(ValueError, match="cannot shard shape"):
    distributed.shard_global({"x": np.float32(1.0)}, mesh, "tasks")
  assert distributed.is_primary() and not distributed.is_multiprocess()


def test_initialize_rejects_a_bad_process_id():
  with pytest.raises(ValueError, match="process_id must be in 0 .. 1"):
    distributed.initialize("127.0.0.1:1", num_processes=2, process_id=2)


def test_process_flags_need_distributed(capsys):
  from metarec_jax.cli import main
  with pytest.raises(SystemExit, match="--coordinator, --num-processes need --distributed"):
    main(["run", "experiments/quickstart.py", "--coordinator", "127.0.0.1:1234", "--num-processes", "2"])
