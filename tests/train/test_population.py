"""The population loop: per-member selection and checkpoints, resume from the latest step every member has."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from metarec_jax.meta.step import MetaTrainState
from metarec_jax.train.loop import LoopSettings, NonFiniteError
from metarec_jax.train.population import train_population

SETTINGS = LoopSettings(steps=6, tasks_per_batch=1, eval_every=2, log_every=2, checkpoint_every=2)
MEMBERS = [("a", 0), ("b", 0)]
RATES = jnp.asarray([1.0, -2.0])  # member i's params move by RATES[i] per step


def fresh():
  return MetaTrainState(step=jnp.zeros((2,), jnp.int32), params={"w": jnp.zeros((2, 3))}, opt_state={},
                        rng=jnp.zeros((2, 2), jnp.uint32))


@jax.jit
def step(states, tasks, features):
  w = states.params["w"] + RATES[:, None]
  loss = jnp.sum(w, axis=1)
  return states.replace(step=states.step + 1, params={"w": w}), {"loss": loss, "grad_norm": jnp.abs(loss)}


def validates():
  # member a is best at step 4 (|w - 4| smallest), member b at its last step
  return [lambda p: {"valid": float(abs(p["w"][0] - 4.0))}, lambda p: {"valid": float(p["w"][0])}]


def run(dirs, on_step=None, log=None):
  return train_population(MEMBERS, fresh(), step, None, None, sets=["valid"], validates=validates(),
                          settings=SETTINGS, ckpt_dirs=dirs, log=log, progress=False, on_step=on_step)


class Killed(Exception):
  pass


def kill_at(step_no):
  def hook(name, seed, step):
    if step == step_no:
      raise Killed
  return hook


def test_each_member_keeps_its_own_selection():
  a, b = run(None)
  assert a.best_step == {"valid": 4} and b.best_step == {"valid": 6}
  np.testing.assert_array_equal(a.best["valid"]["w"], [4.0] * 3)
  np.testing.assert_array_equal(b.state.params["w"], [-12.0] * 3)


def test_a_killed_population_resumes_to_the_same_result(tmp_path):
  straight = run(None)
  dirs = [tmp_path / "a", tmp_path / "b"]
  with pytest.raises(Killed):
    run(dirs, on_step=kill_at(5))
  resumed = run(dirs)
  for s, r in zip(straight, resumed):
    assert s.best_step == r.best_step and s.best_val == r.best_val
    np.testing.assert_array_equal(s.state.params["w"], r.state.params["w"])
    assert int(r.state.step) == 6
  with ocp.CheckpointManager(dirs[0].absolute()) as m:  # an ordinary checkpoint: the loop's own format
    assert m.latest_step() == 6 and set(m.restore(6)) == {"state", "best", "best_val", "best_step"}


def test_members_saved_at_different_steps_resume_from_the_latest_common_one(tmp_path):
  dirs = [tmp_path / "a", tmp_path / "b"]
  with pytest.raises(Killed):
    run(dirs, on_step=kill_at(5))          # both members hold steps 2 and 4
  with ocp.CheckpointManager(dirs[1].absolute()) as m:
    m.delete(4)                            # as if killed between the two members' saves of step 4
  steps = []
  resumed = run(dirs, on_step=lambda name, seed, step: steps.append(step))
  assert steps[0] == 3                     # resumed from step 2, the latest step both members have
  assert [r.best_step for r in resumed] == [{"valid": 4}, {"valid": 6}]
  np.testing.assert_array_equal(resumed[1].state.params["w"], [-12.0] * 3)


def test_a_nan_names_the_member():
  bad = jax.jit(lambda s, t, f: (s, {"loss": jnp.asarray([0.0, jnp.nan]), "grad_norm": jnp.zeros(2)}))
  with pytest.raises(NonFiniteError, match="b seed 0: loss is nan at step 1"):
    train_population(MEMBERS, fresh(), bad, None, None, sets=["valid"], validates=validates(), settings=SETTINGS,
                     progress=False)
