"""metarec-jax: meta-learned cold-start recommendation in JAX."""

from metarec_jax.config import (ConfigError, apply_overrides, default_config, load_experiment, method_config,
                                validate)
from metarec_jax.data import (SCENARIOS, Dataset, FeatureTable, Features, FieldSpec, Interactions,
                              ScenarioSplit, SyntheticSpec, TaskBatch, TaskSet, build_taskset,
                              features_from_tables, make_split, make_synthetic, sample_batch, split_tasks)
from metarec_jax.eval import (BASELINES, METRICS, RANKING_METRICS, RatingStats, compute_metrics,
                              make_adapted_predictor, mae, ndcg_at_k, ranking_metrics, rmse, score_implicit)
from metarec_jax.data import load_lastfm, to_implicit, with_negatives
from metarec_jax.experiment import NonFiniteError, evaluate_workdir, prepare, run, train_method
from metarec_jax.meta import (LEARNERS, LearnerSpec, MetaTrainState, adapt, adapt_factored, adapt_on_support,
                              adapt_task, chunked_vmap,
                              init_meta_params, init_state, learner_spec, make_meta_train_step, make_optimizer,
                              make_loss, meta_gradient, partition, task_loss)
from metarec_jax.models import (DotHead, Extractor, FastDense, MLPHead, RecModel, RelationHead, init_params,
                                make_predict)

__version__ = "0.1.0"
