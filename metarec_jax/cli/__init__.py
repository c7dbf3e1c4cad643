"""The ``metarec`` command line, defined here and only here: a thin layer over the library.

Commands: ``run``, ``eval``, ``report``, ``distill``, ``config``
(`cli.experiments`), ``data info | download`` (`cli.data`), ``bench meta-step
| serving`` (`cli.bench`), ``features text | tokens`` (`cli.features`),
``sweep`` (`cli.sweep`), ``export`` and ``serve`` (`cli.serve`). Every help
shows the defaults; ``metarec --version`` the versions. Each handler parses its
arguments, calls one library function and prints; every expected failure
is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from metarec_jax.cli import bench, data, experiments, features, serve, sweep
from metarec_jax.config import ConfigError
from metarec_jax.distributed import DistributedError
from metarec_jax.pyfile import PyFileError

# Failures a user can act on: one line, no traceback.
USER_ERRORS = (ConfigError, FileNotFoundError, FloatingPointError, ValueError, PyFileError, DistributedError)


class HelpFormatter(argparse.HelpFormatter):
  """Appends ``(default: X)`` to every option's help that does not state its default already."""

  def _get_help_string(self, action: argparse.Action) -> str:
    text = action.help or ""
    default = action.default
    if ("default" in text or default is None or default is False or default == argparse.SUPPRESS
        or not action.option_strings
        or action.nargs == 0):
      return text
    shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
    return f"{text} (default: {shown})"


class Parser(argparse.ArgumentParser):
  """``argparse.ArgumentParser`` with `HelpFormatter`; subcommands inherit both."""

  def __init__(self, *args, **kwargs):
    kwargs.setdefault("formatter_class", HelpFormatter)
    super().__init__(*args, **kwargs)


def version() -> str:
  """``metarec-jax X (jax Y, Python Z)``."""
  import platform

  import jax

  from metarec_jax import __version__
  return f"metarec-jax {__version__} (jax {jax.__version__}, Python {platform.python_version()})"


def build_parser() -> argparse.ArgumentParser:
  """The whole ``metarec`` parser."""
  parser = Parser(prog="metarec", description="Meta-learned cold-start recommendation in JAX.")
  parser.add_argument("--version", action=_VersionAction, help="print the versions and exit")
  sub = parser.add_subparsers(dest="command", required=True)
  experiments.add(sub)
  data.add(sub)
  bench.add(sub)
  features.add(sub)
  sweep.add(sub)
  serve.add(sub)
  return parser


class _VersionAction(argparse.Action):
  """``--version``: computes the text only when asked (importing jax takes a moment)."""

  def __init__(self, option_strings, dest, **kwargs):
    super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

  def __call__(self, parser, namespace, values, option_string=None):
    print(version())
    parser.exit()


def fail(message: str) -> int:
  """Prints ``metarec: error: message`` on stderr; returns exit status 2."""
  print(f"metarec: error: {message}", file=sys.stderr)
  return 2


def interrupted(args: argparse.Namespace, argv: list[str]) -> int:
  """Ctrl-C: one line saying what was kept and how to go on; exit status 130 (128 + SIGINT)."""
  command = "metarec " + " ".join(shlex.quote(a) for a in argv)
  if getattr(args, "resumable", False):
    print(f"metarec: interrupted; the last checkpoint is kept: `{command}` resumes from it", file=sys.stderr)
  else:
    print("metarec: interrupted", file=sys.stderr)
  return 130


def main(argv: list[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  args = build_parser().parse_args(argv)
  try:
    return args.func(args)
  except USER_ERRORS as e:
    return fail(str(e))
  except KeyboardInterrupt:
    return interrupted(args, argv)
  except BrokenPipeError:  # `metarec config ... | head`: the reader left; no traceback
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 1


if __name__ == "__main__":
  sys.exit(main())
