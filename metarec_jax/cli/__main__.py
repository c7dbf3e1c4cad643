"""``python -m metarec_jax.cli``: the same as ``metarec``."""

import sys

from metarec_jax.cli import main

sys.exit(main())
