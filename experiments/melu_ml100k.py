"""MeLU's setting on MovieLens 100K, protocol `random_users`: every learner vs. the baselines.

Command:   metarec run experiments/melu_ml100k.py --seeds 3
           (data.path defaults to $METAREC_DATA/ml-100k: u.data, u.user, u.item,
           u.genre, u.occupation; fetch them with
           metarec data download ml-100k --to DIR, then --set data.path=DIR)
Protocol:  `random_users` (RecBole-MetaRec's split): users with 13..100 ratings
           are split at random (seeded) 8:1:1 into meta-training, validation and
           test users; the test users are unseen in meta-training, so the one
           scenario is `user_cold` (items are shared). Query = 10 random ratings,
           support = the rest (up to 90). MeLU's ML-100K fields: gender, age,
           occupation, zip; genre, year. `--set data.protocol=temporal
           --set eval.scenarios=warm,user_cold,item_cold,user_item_cold` gives
           MeLU's release-year / first-rating rule on the raw data instead.
Runtime:   468 s for the first 13 methods and 3 seeds on the 2-core CPU (shared
           with other jobs at the time); item_mean_user_bias, melu_plus and
           melu_ridge alone: 115 s for 3 seeds.
Expected:  user-cold MAE, mean ± std over seeds 0-2 (58 test users per seed):
           item_mean_user_bias 0.7826 ± 0.0417, melu1 0.8537 ± 0.0349,
           maml 0.8390 ± 0.0473, melu_plus 0.7775 ± 0.0417, melu_ridge
           0.7653 ± 0.0408 (the best; every other learner is in README
           "Reproducing MeLU"). melu_plus and melu_ridge are the named presets
           every experiment may list (metarec_jax/methods/presets.py). Seeds differ by ±0.04: only the baseline family
           vs. the plain learners is clear.
"""

import os

from metarec_jax import default_config


def get_config():
  c = default_config()
  c.name = "melu_ml100k"
  root = os.environ.get("METAREC_DATA", "")
  c.data.name = "movielens"
  c.data.path = os.path.join(root, "ml-100k") if root else ""
  c.data.protocol = "random_users"
  c.data.max_ratings = 100
  c.data.support_cap = 90             # support = every rating but the 10 query ones
  c.eval.scenarios = ("user_cold",)
  c.model.user_fields = ("gender", "age", "occupation", "zip")
  c.model.item_fields = ("genre", "year")
  c.model.embed_dim = 32
  c.model.head = "mlp"
  c.model.head_hidden = (64, 64)
  c.meta.learner = "melu"
  c.meta.inner_lr = 5e-3
  c.meta.inner_steps = 1
  c.optimizer.lr = 5e-4
  # MeLU's 20 epochs: 466 meta-training users / 32 tasks per batch ≈ 15 steps an epoch.
  c.train.steps = 300
  c.train.tasks_per_batch = 32
  c.train.eval_every = 25
  c.train.log_every = 25
  c.train.checkpoint_every = 100
  c.eval.finetune_lrs = (0.001, 0.003, 0.01, 0.03)
  c.eval.finetune_steps = (1, 5)
  c.methods = ("global_mean", "item_mean_user_bias", "pooled", "pooled_finetune", "melu1", "melu5", "maml",
               "fomaml", "metasgd", "reptile", "anil", "maml_relation", "melu_plus", "melu_ridge")
  c.variants.melu1 = ("meta.learner=melu", "meta.inner_steps=1")
  c.variants.melu5 = ("meta.learner=melu", "meta.inner_steps=5")
  c.variants.maml_relation = ("meta.learner=maml", "model.head=relation", "model.user_mlp=64",
                              "model.item_mlp=64")
  # melu_plus and melu_ridge are the framework's named presets (metarec_jax/methods/presets.py): residual
  # over item mean + user bias, item id and statistics, support-set user vector (+ ridge user vector).
  return c
