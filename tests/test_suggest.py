""""Did you mean": the closest names, and none when nothing is close."""

from __future__ import annotations

from metarec_jax.config import unknown_key
from metarec_jax.suggest import close_matches, did_you_mean

KEYS = ["train.steps", "train.log_every", "optimizer.lr", "meta.inner_lr", "meta.inner_steps", "distill.lr"]


def test_a_typo_in_the_last_part_gets_the_one_close_key():
  assert close_matches("train.step", KEYS) == ["train.steps"]
  assert close_matches("meta.iner_lr", KEYS) == ["meta.inner_lr"]
  assert close_matches("trian.steps", KEYS)[0] == "train.steps"


def test_a_bare_leaf_finds_the_keys_that_end_with_it():
  assert close_matches("lr", KEYS) == ["distill.lr", "optimizer.lr"]


def test_nothing_close_gives_no_suggestion():
  assert close_matches("zzz", KEYS) == [] and did_you_mean("zzz", KEYS) == ""


def test_messages():
  assert did_you_mean("mamll", ["maml", "melu", "reptile"]) == "; did you mean 'maml'?"
  assert did_you_mean("lr", KEYS) == "; did you mean 'distill.lr' or 'optimizer.lr'?"
  assert unknown_key("meta.nope", KEYS) == ("unknown key 'meta.nope'; the keys under meta are: meta.inner_lr, "
                                            "meta.inner_steps")
  assert "metarec config EXPERIMENT" in unknown_key("nope", KEYS)


def test_paths_are_matched_on_their_file_name():
  files = ["experiments/quickstart.py", "experiments/cold_items_ml1m.py", "experiments/melu_ml1m.py"]
  assert close_matches("experiments/quickstar.py", files) == ["experiments/quickstart.py"]
