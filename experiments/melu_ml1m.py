"""MeLU on its own MovieLens-1M release, beside every learner and the baselines.

Command:   metarec run experiments/melu_ml1m.py --seeds 3
           (data.path defaults to $METAREC_DATA/melu-ml1m; else --set data.path=DIR)
Runtime:   one method, one seed, whole run, 2-core CPU with nothing else running:
           melu1 44 s, maml 111 s, melu_plus 117 s, melu_ridge 131 s
           (melu_plus_long, melu_ridge_long: 2,000 steps, about twice that).
Expected:  MAE warm / user-cold / item-cold / user+item-cold, mean of seeds 0-2
           (README "Reproducing MeLU" has every method and the std):
             item_mean_user_bias  0.7337 / 0.7377 / 0.8861 / 0.8774
             melu1 (MeLU)         0.7413 / 0.7487 / 0.9009 / 0.9011
             maml                 0.7382 / 0.7452 / 0.9016 / 0.9063
             melu_plus            0.7219 / 0.7339 / 0.8792 / 0.8756
             melu_plus_long       0.7256 / 0.7335 / 0.8755 / 0.8688
             melu_ridge           0.7104 / 0.7199 / 0.8713 / 0.8670
             melu_ridge_long      0.7165 / 0.7190 / 0.8720 / 0.8705
           and on the meta-training users themselves (table warm:train_users,
           not held out): melu_ridge 0.6640, item_mean_user_bias 0.7207.
           Plain MeLU does not beat item_mean_user_bias; the residual
           configurations do, in every scenario, and the ridge user vector
           (melu_ridge*) most.

Protocol `melu_states`: MeLU's four state files are the four scenarios; users
with 13..100 ratings; query = 10 random ratings, support = the rest. 10% of the
warm users are the warm test users; each scenario's model is selected on a
held-out 10% of that scenario's own users (eval.selection=per_scenario).
"""

import os

from metarec_jax import default_config


def get_config():
  c = default_config()
  c.name = "melu_ml1m"
  root = os.environ.get("METAREC_DATA", "")
  c.data.name = "melu"
  c.data.path = os.path.join(root, "melu-ml1m") if root else ""
  c.data.protocol = "melu_states"
  c.data.query_size = 10
  c.data.support_cap = 90
  c.data.max_ratings = 100
  # MeLU's architecture: one 32-dim embedding per field, 64 -> 64 -> 1 decision layers.
  c.model.user_fields = ("gender", "age", "occupation", "zip")
  c.model.item_fields = ("rate", "genre", "director", "actor")
  c.model.embed_dim = 32
  c.model.head = "mlp"
  c.model.head_hidden = (64, 64)
  # MeLU: local update of the decision layers, second order, MSE.
  c.meta.learner = "melu"
  c.meta.inner_lr = 5e-3
  c.meta.inner_steps = 1
  c.optimizer.lr = 5e-4
  c.train.steps = 1000
  c.train.tasks_per_batch = 32
  c.train.eval_every = 50
  c.train.log_every = 50
  c.train.checkpoint_every = 250
  c.eval.selection = "per_scenario"  # each scenario's model is selected on its own held-out users
  c.eval.finetune_lrs = (0.001, 0.003, 0.01, 0.03)
  c.eval.finetune_steps = (1, 5)
  c.eval.train_users = True  # also score the meta-training users: the warm measurement of reproductions
                             # that test on their training users (table "warm:train_users"; not held out)
  c.methods = ("global_mean", "item_mean_user_bias", "pooled", "pooled_finetune", "melu1", "melu5", "maml",
               "fomaml", "metasgd", "reptile", "anil", "maml_relation", "melu_plus", "melu_plus_long",
               "melu_ridge", "melu_ridge_long")
  c.variants.melu1 = ("meta.learner=melu", "meta.inner_steps=1")
  c.variants.melu5 = ("meta.learner=melu", "meta.inner_steps=5")
  c.variants.maml_relation = ("meta.learner=maml", "model.head=relation", "model.user_mlp=64",
                              "model.item_mlp=64")
  # The configuration that beats the baseline: residual over item mean + user
  # bias, item id and item statistics as inputs, a support-set user vector,
  # item-cold simulation, year and writer as extra item features.
  c.variants.melu_plus = ("meta.learner=melu", "model.residual=true", "model.item_id=true",
                          "model.item_stats=true", "model.support_vector=true", "train.item_cold_share=0.3",
                          "model.item_fields=rate,genre,director,actor,year,writer")
  # melu_plus trained twice as long, with the baseline's shrinkage at the values
  # item_mean_user_bias picks on the cold validation users (item 2, user 10).
  c.variants.melu_plus_long = c.variants.melu_plus + ("train.steps=2000", "model.item_mean_reg=2.0",
                                                      "model.bias_reg=10.0")
  # ... plus a closed-form ridge user vector over 16 learned item factors, with
  # a prior from the user's demographics (its intercept replaces the user bias).
  c.variants.melu_ridge = c.variants.melu_plus + ("model.ridge_dim=16",)
  c.variants.melu_ridge_long = c.variants.melu_plus_long + ("model.ridge_dim=16",)
  return c
