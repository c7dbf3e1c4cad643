"""metarec-jax: meta-learned cold-start recommendation in JAX."""

from metarec_jax.config import ConfigError, apply_overrides, default_config, load_experiment, validate
from metarec_jax.data import (SCENARIOS, Dataset, FeatureTable, FieldSpec, Interactions, ScenarioSplit,
                              SyntheticSpec, build_taskset, features_from_tables, make_split, make_synthetic,
                              sample_batch, split_tasks)
from metarec_jax.data import load_lastfm, seen_lists, sorted_pool, to_implicit, with_negatives, with_sorted_negatives
from metarec_jax.data import ContentPrior, fit_content_prior, split_cold_items_ranking
from metarec_jax.eval import (METRICS, RANKING_METRICS, RatingStats, compute_metrics, make_adapted_predictor, mae,
                              ndcg_at_k, ranking_metrics, rmse, score_full_ranking, score_implicit)
from metarec_jax.experiment import evaluate_workdir, run
from metarec_jax.meta import (LEARNERS, Learner, LearnerSpec, LossSpec, MetaTrainState, Schedule, adapt,
                              adapt_factored, adapt_on_support, adapt_task, chunked_vmap, init_meta_params,
                              init_population, init_state, learner_spec, make_batch_draw, make_loss,
                              make_member_step, make_meta_train_step, make_optimizer, make_population_step,
                              meta_gradient, partition, population_member, register_learner, stack_members, task_loss)
from metarec_jax.methods import (METHODS, FitContext, Fitted, FittedModel, Method, NotServable, distill_workdir,
                                 method_config, register_method, resolve, resolve_all)
from metarec_jax.models import (DotHead, Extractor, FastDense, FeatureModel, MLPHead, RecModel, RelationHead,
                                init_params, make_predict, register_extractor, register_head)
from metarec_jax.prepared import Prepared, prepare
from metarec_jax.rundir import RunDir
from metarec_jax.export import Artifact, RequestError, export_recommender, export_run, load_artifact
from metarec_jax.server import make_server
from metarec_jax.serving import Recommender, Scorer
from metarec_jax.sweep import run_sweep
from metarec_jax.train import NonFiniteError, train_loop, train_population
from metarec_jax.types import Features, MetaParams, PredictFn, TaskBatch, TaskSet

def _version() -> str:
  """The installed distribution's version (pyproject.toml is its one source)."""
  from importlib.metadata import PackageNotFoundError, version
  try:
    return version("metarec-jax")
  except PackageNotFoundError:  # imported from a source tree that was never installed
    return "0+unknown"


__version__ = _version()


def _public_names() -> list[str]:
  """The names re-exported above and every module of the package (the public API; `pdoc metarec_jax`
  documents these)."""
  import pkgutil
  import types
  names = {n for n, v in globals().items() if not n.startswith("_") and not isinstance(v, types.ModuleType)}
  names |= {m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")}
  return sorted(names)


__all__ = _public_names()
