"""Shared fixtures: a tiny synthetic data set, model and task batch."""

from __future__ import annotations

import atexit
import contextlib
import os
import pathlib
import shutil
import tempfile

# The tests compile far more than they run: LLVM's cheapest optimisation level
# compiles about a third faster on the CPU. It changes no floating-point
# semantics (XLA's CPU backend keeps fast-math off either way); set before JAX
# starts its backend, and inherited by subprocesses (notebooks, CLI runs).
_FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FAST_COMPILE).strip()

import jax  # noqa: E402  (after XLA_FLAGS)
import jax.numpy as jnp  # noqa: E402
import pytest  # noqa: E402

from metarec_jax import default_config
from metarec_jax.data import (SyntheticSpec, build_taskset, features_from_tables, make_split, make_synthetic,
                              sample_batch)
from metarec_jax.models import RecModel, init_params, make_predict

# Repeated runs of the same tiny experiment compile the same programs: let them
# share compiled executables through JAX's persistent cache (one folder per session,
# made by the first process; pytest-xdist's workers inherit it and leave it to that one).
_CACHE_ENV = "METAREC_TEST_JAX_CACHE"
if os.environ.get(_CACHE_ENV):
  _CACHE_DIR = os.environ[_CACHE_ENV]
else:
  _CACHE_DIR = tempfile.mkdtemp(prefix="metarec-jax-cache-")
  os.environ[_CACHE_ENV] = _CACHE_DIR
  atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)
jax.config.update("jax_compilation_cache_dir", _CACHE_DIR)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

TINY_SYNTHETIC = dict(num_users=160, num_items=120, latent_dim=3, feature_share=0.35, cold_user_share=0.25,
                      cold_item_share=0.3, min_ratings=14, max_ratings=20, noise=0.3, seed=0)


def tiny_config():
  """A config that runs the whole experiment in seconds."""
  c = default_config()
  c.name = "tiny"
  c.data.synthetic.update(TINY_SYNTHETIC)
  c.model.embed_dim = 4
  c.model.head_hidden = (8,)
  c.train.steps = 12
  c.train.tasks_per_batch = 8
  c.train.eval_every = 6
  c.train.checkpoint_every = 4
  c.train.log_every = 4
  c.eval.tasks_per_chunk = 64
  c.eval.finetune_lrs = (0.01, 0.1)
  c.eval.finetune_steps = (1,)
  c.eval.bias_regs = (0.0, 5.0)
  return c


def make_implicit(c, metrics=("auc", "ndcg@5"), scenarios=("user_cold",)):
  """Turn a tiny config into its implicit-feedback form (0/1 labels, BCE, 19 sampled test negatives); returns it."""
  c.data.feedback = "implicit"
  c.data.positive_threshold = 4.0
  c.data.query_size = 4
  c.data.support_cap = 6
  c.data.min_support = 2
  c.data.negatives_per_positive = 2
  c.meta.loss = "bce"
  c.eval.num_negatives = 19
  c.eval.metrics = tuple(metrics)
  c.eval.scenarios = tuple(scenarios)
  return c


@pytest.fixture(scope="session")
def tiny_data():
  return make_synthetic(SyntheticSpec(**TINY_SYNTHETIC))


@pytest.fixture(scope="session")
def tiny_setup(tiny_data):
  """(model, predict, params, features, train TaskSet, a TaskBatch of 4 tasks)."""
  split = make_split(tiny_data, "cold_flags", 0)
  features = features_from_tables(tiny_data.users, tiny_data.items)
  tasks = jax.device_put(build_taskset(split.train, min_length=13))
  model = RecModel(tiny_data.users.specs, tiny_data.items.specs, embed_dim=3, head_hidden=(5,), offset=3.5)
  predict = make_predict(model)
  params = init_params(model, features, jax.random.PRNGKey(0))
  batch = sample_batch(tasks, jax.random.PRNGKey(1), 4, 5, 6)
  return model, predict, params, features, tasks, batch


@contextlib.contextmanager
def x64():
  """Float64 inside the block (jax.enable_x64 or its older experimental home)."""
  ctx = getattr(jax, "enable_x64", None)
  if ctx is not None and callable(ctx):
    with ctx(True):
      yield
  else:  # older jax
    from jax.experimental import enable_x64
    with enable_x64():
      yield


def data_dir(name: str) -> pathlib.Path:
  """A folder of the shared data sets, or skip when METAREC_DATA is unset."""
  root = os.environ.get("METAREC_DATA")
  if not root:
    pytest.skip("METAREC_DATA is unset: point it at the shared data folder (CI sets ../shared/data)")
  path = pathlib.Path(root) / name
  if not path.exists():
    pytest.skip(f"{path} does not exist (METAREC_DATA={root})")
  return path


def tree_allclose(a, b, **kw):
  la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
  assert len(la) == len(lb)
  return all(bool(jnp.allclose(x, y, **kw)) for x, y in zip(la, lb))
