"""The task axis sharded over 8 (emulated CPU) devices gives the 1-device params."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

SCRIPT = r'''
import jax, numpy as np, optax
from metarec_jax.data import SyntheticSpec, build_taskset, features_from_tables, make_split, make_synthetic
from metarec_jax.meta import init_meta_params, init_state, learner_spec, make_meta_train_step
from metarec_jax.meta.step import replicate, task_mesh
from metarec_jax.models import RecModel, init_params, make_predict
assert jax.device_count() == 8, jax.devices()
data = make_synthetic(SyntheticSpec(num_users=160, num_items=120, latent_dim=3, min_ratings=14, max_ratings=20))
split = make_split(data, "cold_flags", 0)
features = features_from_tables(data.users, data.items)
tasks = jax.device_put(build_taskset(split.train, min_length=13))
model = RecModel(data.users.specs, data.items.specs, embed_dim=3, head_hidden=(5,), offset=3.5)
predict = make_predict(model)
spec = learner_spec("maml", inner_lr=0.1, inner_steps=2)
opt = optax.adam(1e-2)
params = init_meta_params(spec, init_params(model, features, jax.random.PRNGKey(0)))

def train(mesh):
  step = make_meta_train_step(spec, predict, opt, tasks_per_batch=16, query_size=5, support_size=6, mesh=mesh)
  state = init_state(params, opt, jax.random.PRNGKey(1))
  t, f = tasks, features
  if mesh is not None:
    state, t, f = replicate(state, mesh), replicate(tasks, mesh), replicate(features, mesh)
    hlo = step.lower(state, t, f).compile().as_text()
    assert "all-reduce" in hlo, "the task axis was not split over the devices"
  for _ in range(3):
    state, metrics = step(state, t, f)
  return state, metrics

mesh = task_mesh(8)
sharded, m8 = train(mesh)
plain, m1 = train(None)
leaves8 = jax.tree_util.tree_leaves(sharded.params)
leaves1 = jax.tree_util.tree_leaves(plain.params)
assert len(leaves8) == len(leaves1)
for a, b in zip(leaves8, leaves1):
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
np.testing.assert_allclose(float(m8["loss"]), float(m1["loss"]), rtol=1e-5)
print("SHARDED_OK", len(leaves8))
'''


def test_eight_devices_equal_one(tmp_path):
  env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip(),
             JAX_PLATFORMS="cpu")
  script = tmp_path / "sharded.py"
  script.write_text(SCRIPT)
  root = pathlib.Path(__file__).resolve().parents[2]
  out = subprocess.run([sys.executable, str(script)], cwd=root, env=env, capture_output=True, text=True,
                       timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "SHARDED_OK" in out.stdout
