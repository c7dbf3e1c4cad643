"""``metarec data info | download``."""

from __future__ import annotations

import argparse
import json
import warnings


def _info(args: argparse.Namespace) -> int:
  from metarec_jax.cli import fail
  from metarec_jax.config import ConfigError
  from metarec_jax.data.info import dataset_info, format_info
  from metarec_jax.data.parsing import DataError, DataWarning, MissingDataFile
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", DataWarning)  # the notes are printed instead
      info = dataset_info(args.path, fmt=args.format, protocol=args.protocol, seed=args.seed,
                          overrides=args.set or [])
  except (DataError, MissingDataFile, ConfigError, KeyError, ValueError) as e:
    return fail(str(e.args[0]) if isinstance(e, KeyError) else str(e))
  print(json.dumps(info, indent=2) if args.json else format_info(info))
  return 0


def _download(args: argparse.Namespace) -> int:
  from metarec_jax.cli import fail
  from metarec_jax.data.download import DownloadError, download
  try:
    download(args.name, args.to)
  except DownloadError as e:
    return fail(str(e))
  except OSError as e:
    return fail(f"cannot write to {args.to}: {e}")
  return 0


def add(sub: argparse._SubParsersAction) -> None:
  from metarec_jax.data.download import SOURCES
  from metarec_jax.data.info import FORMATS
  from metarec_jax.data.splits import PROTOCOLS
  data = sub.add_parser("data", help="inspect or download real data sets")
  verbs = data.add_subparsers(dest="verb", required=True)
  info = verbs.add_parser("info", help="users, items, ratings and per-scenario counts of a data folder")
  info.add_argument("path", help="the data folder")
  info.add_argument("--format", choices=FORMATS, default="auto", help="file layout (default: detect)")
  info.add_argument("--protocol", choices=sorted(PROTOCOLS),
                    help="cold-start protocol (default: melu_states / temporal / random_users by format)")
  info.add_argument("--seed", type=int, default=0, help="seed of the split's hold-outs")
  info.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="a data option, e.g. new_item_year=1997 (repeatable)")
  info.add_argument("--json", action="store_true", help="print JSON")
  info.set_defaults(func=_info)
  dl = verbs.add_parser("download", help="download a data set from its public home, with checksums")
  dl.add_argument("name", choices=sorted(SOURCES))
  dl.add_argument("--to", required=True, metavar="DIR", help="target folder (files land directly in it)")
  dl.set_defaults(func=_download)
