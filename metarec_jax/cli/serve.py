"""``metarec export | serve``: a trained run as a self-contained artifact, and that artifact behind HTTP."""

from __future__ import annotations

import argparse

from metarec_jax.config import ConfigError


def _export(args) -> int:
  from metarec_jax.export import export_run
  if args.k_max < 1 or args.max_support < 1:
    raise ConfigError(f"--k-max and --max-support must be >= 1, got {args.k_max} and {args.max_support}")
  platforms = tuple(p for p in args.platforms.split(",") if p.strip())
  m = export_run(args.run, args.out, method=args.method, seed=args.seed, k_max=args.k_max,
                 max_support=args.max_support, platforms=platforms, symbolic=not args.fixed_lengths,
                 verify=not args.no_verify)
  support = m["support"]
  how = ("one function, symbolic support length" if support["symbolic"] else
         f"one function per support length {support['buckets']}")
  if args.fixed_lengths is False and not support["symbolic"]:
    how += f" (a symbolic length failed: {support['symbolic_error']})"
  print(f"exported {m['method']} (seed {m['seed']}, {m['num_items']:,} items, k <= {m['k_max']}, "
        f"support <= {support['max']}, {', '.join(m['platforms'])}; {how}; item ids: {m['item_ids']['kind']}) "
        f"to {args.out}")
  print(f"serve it: metarec serve {args.out} --port 8000")
  return 0


def _serve(args) -> int:
  from metarec_jax.server import serve
  if args.max_body < 1:
    raise ConfigError(f"--max-body must be >= 1, got {args.max_body}")
  serve(args.artifact, args.host, args.port, warmup=not args.no_warmup, max_body=args.max_body,
        log_requests=args.log_requests, log=lambda s: print(f"metarec serve: {s}", flush=True))
  return 0


def add(sub: argparse._SubParsersAction) -> None:
  """Registers ``metarec export`` and ``metarec serve``."""
  from metarec_jax.export import DEFAULT_K_MAX, DEFAULT_MAX_SUPPORT, DEFAULT_PLATFORMS
  from metarec_jax.server import MAX_BODY
  ex = sub.add_parser(
      "export", help="write a trained run as a self-contained artifact (StableHLO function + weights)",
      description="Writes one learned method of a finished run as a folder that loads with jax and numpy alone: "
      "artifact.json, the jax.export (StableHLO) serialization of adapt + score + top-k, the weights as .npz, and "
      "copies of the loader and the server. See docs/serving.md.")
  ex.add_argument("run", help="a finished run folder (metarec run ... --workdir)")
  ex.add_argument("--out", required=True, help="the artifact folder (an earlier artifact there is replaced)")
  ex.add_argument("--method", help="a learned method of the run (default: the first in config.methods)")
  ex.add_argument("--seed", type=int, help="which seed's checkpoint (default: the run's config.seed)")
  ex.add_argument("--k-max", type=int, default=DEFAULT_K_MAX,
                  help="the most items a request may ask for (capped at the item count)")
  ex.add_argument("--max-support", type=int, default=DEFAULT_MAX_SUPPORT,
                  help="the most ratings a request may give (buckets: powers of two from 32 up to it)")
  ex.add_argument("--platforms", default=",".join(DEFAULT_PLATFORMS),
                  help="comma-separated platforms to lower for (cpu, cuda, rocm, tpu)")
  ex.add_argument("--fixed-lengths", action="store_true",
                  help="one function per support bucket instead of one with a symbolic support length")
  ex.add_argument("--no-verify", action="store_true",
                  help="skip checking the artifact's answer against the run's recommender on a probe user")
  ex.set_defaults(func=_export)
  sv = sub.add_parser(
      "serve", help="serve an exported artifact over HTTP (POST /recommend, GET /health)",
      description="A small HTTP JSON endpoint on the standard library: POST /recommend with "
      '{"items": [...], "ratings": [...], "k": 10, "user": {...}} answers {"items": [...], "scores": [...]}; '
      "GET /health describes the artifact. Malformed requests get a 4xx with {\"error\": reason}. Ctrl-C stops.")
  sv.add_argument("artifact", help="an artifact folder (metarec export ... --out)")
  sv.add_argument("--port", type=int, default=8000, help="port to listen on, 0 for a free one")
  sv.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface; no TLS, "
                  "no authentication)")
  sv.add_argument("--max-body", type=int, default=MAX_BODY, help="largest request body in bytes")
  sv.add_argument("--no-warmup", action="store_true",
                  help="listen at once; each support bucket compiles at its first request")
  sv.add_argument("--log-requests", action="store_true", help="a line per request on stderr")
  sv.set_defaults(func=_serve)
