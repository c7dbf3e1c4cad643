"""MeLU's successors on MeLU's own MovieLens-1M release, one protocol, beside MeLU and the baselines.

Command:   metarec run experiments/successors_ml1m.py --seeds 3
           (data.path defaults to $METAREC_DATA/melu-ml1m; else --set data.path=DIR)
Protocol:  exactly experiments/melu_ml1m.py's (it is loaded from there): MeLU's four state files are
           the four scenarios; users with 13..100 ratings; query = 10 random ratings, support = the
           rest; each scenario's model is selected on a held-out 10% of that scenario's own users
           (eval.selection=per_scenario); the meta-training users are scored too (warm:train_users).
Methods:   item_mean_user_bias and global_mean (baselines), melu1 (MeLU) and melu_ridge (the
           framework's strong configuration) from melu_ml1m.py; the successors, each one file in
           metarec_jax/methods/: tanp (TaNP, WWW 2021), cmml (CMML, CIKM 2021), coldnas (ColdNAS,
           WWW 2023, the operators our search found), lwa / nlba (Vartak et al., NeurIPS 2017), mamo
           (MAMO, KDD 2020), metaemb (MetaEmb, SIGIR 2019) and mwuf (MWUF, SIGIR 2021) on a pooled
           base with item ids, metahin (MetaHIN, KDD 2020) on meta-paths over actors and
           directors. Every one trains with the same outer optimiser settings, steps and validation
           selection as MeLU here (Adam 5e-4, 1,000 steps of 32 users).
Runtime:   and Expected: README "MeLU's successors" has the measured table, the command and the
           runtimes (they are not repeated here, so they cannot drift apart).
"""

import pathlib

from metarec_jax import load_experiment


def get_config():
  c = load_experiment(pathlib.Path(__file__).with_name("melu_ml1m.py"))
  c.name = "successors_ml1m"
  c.methods = ("global_mean", "item_mean_user_bias", "melu1", "melu_ridge", "tanp", "cmml", "coldnas", "lwa",
               "nlba", "mamo", "metaemb", "mwuf", "metahin")
  return c
