"""The ``metarec`` command line, defined here and only here: a thin layer over the library.

Commands: ``run``, ``eval``, ``report``, ``distill`` (`cli.experiments`),
``data info | download`` (`cli.data`), ``bench meta-step | serving``
(`cli.bench`), ``features text`` (`cli.features`). Each handler parses its
arguments, calls one library function and prints; every expected failure
is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from metarec_jax.cli import bench, data, experiments, features
from metarec_jax.config import ConfigError
from metarec_jax.distributed import DistributedError
from metarec_jax.pyfile import PyFileError

# Failures a user can act on: one line, no traceback.
USER_ERRORS = (ConfigError, FileNotFoundError, FloatingPointError, ValueError, PyFileError, DistributedError)


def build_parser() -> argparse.ArgumentParser:
  """The whole ``metarec`` parser."""
  parser = argparse.ArgumentParser(prog="metarec", description="Meta-learned cold-start recommendation in JAX.")
  sub = parser.add_subparsers(dest="command", required=True)
  experiments.add(sub)
  data.add(sub)
  bench.add(sub)
  features.add(sub)
  return parser


def fail(message: str) -> int:
  """Prints ``metarec: error: message`` on stderr; returns exit status 2."""
  print(f"metarec: error: {message}", file=sys.stderr)
  return 2


def main(argv: list[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  try:
    return args.func(args)
  except USER_ERRORS as e:
    return fail(str(e))


if __name__ == "__main__":
  sys.exit(main())
