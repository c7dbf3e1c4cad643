"""One process of the multi-process test (`tests/test_distributed.py`), or its one-process reference.

Usage::

    python tests/distributed_worker.py WORKDIR [COORDINATOR NUM_PROCESSES PROCESS_ID]

With a coordinator it first joins the multi-controller runtime
(`metarec_jax.distributed.initialize`). Then, as ``metarec run`` does, it
opens a run folder in ``WORKDIR`` (`rundir.RunDir`) and meta-trains a tiny
MeLU-shaped workload with `train.loop.train_loop`, the task batch sharded
over all global devices: 2 steps with checkpoints, then a second call that
resumes from the step-2 checkpoint and trains to step 3. It writes a part
and the results through the run folder and, on process 0 only, the final
and the selected params to ``WORKDIR/params.npz``.
"""

from __future__ import annotations

import sys

STEPS_FIRST, STEPS = 2, 3


def main(argv: list[str]) -> int:
  workdir = argv[0]
  from metarec_jax import distributed
  if len(argv) > 1:
    distributed.initialize(argv[1], int(argv[2]), int(argv[3]), initialization_timeout=30)
  import jax
  import numpy as np

  from metarec_jax import default_config
  from metarec_jax.bench.workload import Field, WorkloadSpec, make_workload
  from metarec_jax.meta.step import global_norm, init_state, make_meta_train_step, make_optimizer, task_mesh
  from metarec_jax.rundir import RunDir
  from metarec_jax.train.loop import LoopSettings, train_loop

  spec = WorkloadSpec(tasks=8, support=4, query=3, inner_steps=1, inner_lr=0.1, outer_lr=0.01, embed_dim=4,
                      head_hidden=(8,), user_fields=(Field("gender", 2), Field("age", 7)),
                      item_fields=(Field("genre", 9, 3), Field("director", 13)), num_users=20, num_items=30,
                      pool=16)
  w = make_workload(spec)
  mesh = task_mesh(0)  # every device of every process
  opt = make_optimizer("adam", spec.outer_lr)
  step = make_meta_train_step(w.learner, w.predict, opt, tasks_per_batch=spec.tasks, query_size=spec.query,
                              support_size=spec.support, mesh=mesh)
  config = default_config()
  config.name = "distributed_worker"
  rd = RunDir.create(workdir, config)

  norm = jax.jit(global_norm)

  def validate(params):
    return {"valid": float(norm(params))}  # a computation of all processes on the global params

  def train(steps):
    settings = LoopSettings(steps=steps, tasks_per_batch=spec.tasks, eval_every=1, log_every=1,
                            checkpoint_every=2)
    return train_loop("maml", 0, init_state(w.meta, opt, jax.random.PRNGKey(1)), step, w.tasks, w.features,
                      sets=["valid"], validate=validate, settings=settings, ckpt_dir=rd.checkpoint_dir("maml", 0),
                      log=rd.log, progress=False, mesh=mesh)

  train(STEPS_FIRST)
  sel = train(STEPS)  # resumes from the checkpoint of step STEPS_FIRST
  rd.write_part("maml", 0, {"rows": [{"method": "maml", "best_step": sel.best_step["valid"]}]})
  rd.write_results({"rows": [{"method": "maml", "valid": sel.best_val["valid"]}]}, "| method |\n")
  final = distributed.to_local({"final": sel.state.params, "best": sel.best["valid"]})
  flat = {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(final)}
  if distributed.is_primary():
    np.savez(f"{workdir}/params.npz", step=int(sel.state.step), devices=jax.device_count(), **flat)
  print(f"process {jax.process_index()} of {jax.process_count()}: {jax.device_count()} devices, "
        f"step {int(sel.state.step)}, writer {rd.writer}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
