"""Population training: the vmapped step over N states equals N separate runs of the engine's step."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest

from metarec_jax.meta import init_meta_params, init_state, learner_spec, make_meta_train_step
from metarec_jax.data.tasks import sample_batch
from metarec_jax.meta.population import (PopulationMismatch, init_population, make_population_step,
                                         pad_task_length, population_member, population_size, stack_members)
from metarec_jax.models import init_params
from tests.conftest import tree_allclose

STEPS = 3
SHAPES = dict(tasks_per_batch=8, query_size=5, support_size=6)


def test_the_population_step_equals_separate_runs_of_each_member(tiny_setup):
  model, predict, _, features, tasks, _ = tiny_setup
  spec = learner_spec("maml", inner_lr=0.1, inner_steps=1)
  opt = optax.adam(1e-2)
  # two members: different initialisations and different batch streams, as two seeds are
  params = [init_meta_params(spec, init_params(model, features, jax.random.PRNGKey(10 + i))) for i in range(2)]
  keys = [jax.random.PRNGKey(20 + i) for i in range(2)]
  states = init_population(params, opt, keys)
  assert population_size(states) == 2
  step = make_population_step(spec, predict, opt, **SHAPES)
  losses = []
  for _ in range(STEPS):
    states, metrics = step(states, tasks, features)
    assert metrics["loss"].shape == (2,)
    losses.append(np.asarray(metrics["loss"]))

  plain = make_meta_train_step(spec, predict, opt, **SHAPES)
  for i in range(2):
    state = init_state(params[i], opt, keys[i])
    for t in range(STEPS):
      state, m = plain(state, tasks, features)
      np.testing.assert_allclose(float(m["loss"]), losses[t][i], rtol=1e-5)
    member = population_member(states, i)
    assert int(member.step) == STEPS
    assert tree_allclose(member.params, state.params, rtol=1e-5, atol=1e-6)
    assert tree_allclose(member.opt_state, state.opt_state, rtol=1e-5, atol=1e-6)
  # the members really differ (their own params and batches), so the check above could fail
  assert not tree_allclose(population_member(states, 0).params, population_member(states, 1).params,
                           rtol=1e-3, atol=1e-3)


def test_bad_populations_are_refused(tiny_setup):
  model, predict, params, features, _, _ = tiny_setup
  spec = learner_spec("maml", inner_lr=0.1, inner_steps=1)
  opt = optax.adam(1e-2)
  with pytest.raises(ValueError, match="one PRNG key per member"):
    init_population([init_meta_params(spec, params)], opt, [jax.random.PRNGKey(0), jax.random.PRNGKey(1)])
  with pytest.raises(ValueError, match="at least one member"):
    init_population([], opt, [])
  with pytest.raises(ValueError, match="takes no 'mesh'"):
    make_population_step(spec, predict, opt, mesh=None, **SHAPES)


def test_padding_task_lengths_draws_the_same_batches(tiny_setup):
  tasks = tiny_setup[4]
  padded = pad_task_length(tasks, tasks.max_length + 7)
  assert padded.max_length == tasks.max_length + 7
  key = jax.random.PRNGKey(3)
  a, b = (sample_batch(t, key, 8, 5, 6) for t in (tasks, padded))
  assert tree_allclose(a, b, rtol=0, atol=0)


def test_stacking_members_of_different_shapes_names_the_array(tiny_setup):
  tasks = tiny_setup[4]
  stacked = stack_members([tasks, tasks], "task sets")
  assert stacked.items.shape == (2,) + tasks.items.shape
  with pytest.raises(PopulationMismatch, match=r"task sets differ at .*items.*member 1"):
    stack_members([tasks, pad_task_length(tasks, tasks.max_length + 1)], "task sets")


def test_which_methods_train_their_seeds_as_a_population():
  from metarec_jax.methods import resolve
  from tests.conftest import tiny_config
  c = tiny_config()
  assert resolve("maml", c).population_blocker() == ""
  assert resolve("melu", c).population_blocker() == ""
  assert "own model" in resolve("tanp", c).population_blocker()
