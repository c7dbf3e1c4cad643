"""Training: the one loop with validation selection, checkpoints, resume and the NaN stop (and its population form)."""

from metarec_jax.train.loop import NonFiniteError, Selection, train_loop
from metarec_jax.train.population import train_population
