"""Methods: every row of a results table is a `Method`; one registry resolves names and variants.

Importing this package registers the built-in methods: ``global_mean``,
``item_mean_user_bias``, ``popularity``, ``pooled``, ``pooled_finetune``,
``distill``, MeLU's successors (``tanp``, ``tanp_gating``, ``lwa``, ``nlba``, ``cmml``, ``coldnas``, ``coldnas_search``, ``mamo``, ``metaemb``, ``mwuf``, ``metahin``), and (through the engine's learner table) ``maml``,
``fomaml``, ``metasgd``, ``reptile``, ``anil``, ``melu``.
"""

from metarec_jax.methods.base import (FitContext, Fitted, FittedBaseline, Method, NotServable, Predictions)
from metarec_jax.methods.registry import (METHODS, check_overrides_used, known_methods, method_config,
                                          register_method, resolve, resolve_all)
from metarec_jax.methods.learned import (Adaptation, FittedModel, LearnedMethod, MetaLearner, Trained,
                                         build_model, spec_of, train_model)
from metarec_jax.methods import baselines, distill, id_warmup, lwa, mamo, metahin, modulation, pooled, tanp  # noqa: F401  (registrations)
from metarec_jax.methods.baselines import Baseline, GlobalMean, ItemMeanUserBias, Popularity
from metarec_jax.methods.pooled import Pooled, PooledFinetune
from metarec_jax.methods.distill import Distill, DistilledModel, distill_workdir
