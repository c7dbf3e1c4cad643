"""MAML, MeLU-style and the baselines on any RecBole atomic data set.

Command:   metarec run experiments/maml_recbole.py --set data.path=DIR
           (DIR holds NAME.inter, NAME.user, NAME.item; the data set's name is
           taken from the file names; RecBole's ml-100k is the example below)
Protocol:  `random_users` (RecBole-MetaRec's): users with 13..100 ratings are
           split 8:1:1 into meta-training / validation / test (seeded); test
           users are unseen, so the one scenario is `user_cold`; query = 10
           random ratings, support = the rest (up to 90). Every field of the
           .user / .item files is a feature (token -> categorical, token_seq ->
           multi-hot, float -> dense); name some with --set model.user_fields=...
Runtime:   about 2 min 45 s on a 2-core CPU for RecBole's ml-100k (6 methods, 1 seed,
           1,000 steps each; measured 2:43 wall, 0.91 GB peak memory).
Expected:  RecBole's ml-100k, seed 0: 466 meta-training, 58 validation and 58
           test users. user_cold MAE (nDCG@3): maml 0.797 (0.751), melu 0.805
           (0.730), item_mean_user_bias 0.813 (0.728), pooled_finetune 0.824
           (0.712), pooled 0.888 (0.705), global_mean 0.977 (0.548). With 58
           test users, run --seeds 3 or more before reading differences of 0.01.
"""

from metarec_jax import default_config


def get_config():
  c = default_config()
  c.name = "maml_recbole"
  # melu_plus / melu_ridge: the framework's named presets (metarec_jax/methods/presets.py), the strong
  # configuration on any data set: residual over item mean + user bias, item id and statistics,
  # a support-set user vector (+ a closed-form ridge user vector).
  c.methods = ("global_mean", "item_mean_user_bias", "pooled", "pooled_finetune", "maml", "melu", "melu_plus",
               "melu_ridge")
  c.data.name = "recbole"
  c.data.path = ""                    # give it: --set data.path=DIR
  c.data.protocol = "random_users"
  c.data.max_ratings = 100
  c.data.support_cap = 90             # support = every rating but the 10 query ones
  c.eval.scenarios = ("user_cold",)
  c.train.steps = 1000
  c.train.eval_every = 100
  return c
