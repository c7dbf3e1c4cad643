"""The engine: inner-loop adaptation, meta-learners and the meta-train step."""

from metarec_jax.meta.factored import adapt_factored, use_factored
from metarec_jax.meta.inner import adapt, masked_mse, merge, partition
from metarec_jax.meta.losses import LOSSES, make_loss, masked_bce, masked_bpr
from metarec_jax.meta.learners import (LEARNERS, AdaptedTask, Learner, LearnerSpec, LossSpec, Schedule,
                                       adapt_on_support, adapt_task, query_loss_after_adapting, register_learner,
                                       chunked_vmap, init_meta_params, learner_spec, meta_gradient, task_loss)
from metarec_jax.meta.local import local_table_paths, localise
from metarec_jax.meta.population import (init_population, make_member_step, make_population_step, pad_task_length,
                                         population_member, population_size, stack_members)
from metarec_jax.meta.step import MetaTrainState, init_state, make_batch_draw, make_meta_train_step, make_optimizer
