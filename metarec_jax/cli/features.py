"""``metarec features text DATA_PATH --field plot --out FILE.npy`` and ``metarec features tokens ... --out FILE.npz``."""

from __future__ import annotations

import argparse


def _text(args) -> int:
  from metarec_jax.features.text import embed_item_text
  from metarec_jax.models.text import TextExtraMissing
  fields = [f.strip() for f in args.field.split(",") if f.strip()]
  try:
    meta = embed_item_text(args.data_path, fields, args.out, model=args.model, batch_size=args.batch_size,
                           dtype=args.dtype, progress=not args.no_progress)
  except TextExtraMissing as e:
    from metarec_jax.cli import fail
    return fail(str(e))
  print(f"embedded {meta['rows']} items ({'+'.join(meta['fields'])}, {meta['empty_texts']} without text) "
        f"with {meta['model']} in {meta['seconds']:.1f} s: {args.out} [{meta['rows']}, {meta['width']}]")
  return 0


def _tokens(args) -> int:
  from metarec_jax.features.tokens import tokenize_item_text
  from metarec_jax.models.text import TextExtraMissing
  fields = [f.strip() for f in args.field.split(",") if f.strip()]
  try:
    meta = tokenize_item_text(args.data_path, fields, args.out, model=args.model, max_tokens=args.max_tokens)
  except (TextExtraMissing, ValueError) as e:
    from metarec_jax.cli import fail
    return fail(str(e))
  print(f"tokenised {meta['rows']} items ({'+'.join(meta['fields'])}, {meta['empty_texts']} without text) "
        f"with {meta['model']}'s tokenizer in {meta['seconds']:.1f} s: {args.out} [{meta['rows']}, "
        f"{meta['max_tokens']}], {meta['mean_tokens']:.1f} tokens per item on average, {meta['truncated']} cut")
  return 0


def add(sub: argparse._SubParsersAction) -> None:
  features = sub.add_parser("features", help="precompute item features (text embeddings, token ids)")
  verbs = features.add_subparsers(dest="verb", required=True)
  text = verbs.add_parser("text", help="embed item text with a pretrained sentence encoder (needs .[text])")
  text.add_argument("data_path", help="MeLU's ML-1M release folder (movies_extrainfos.dat)")
  text.add_argument("--field", default="plot",
                    help="text column(s), comma-separated and joined: title, plot, genre, ... (default plot)")
  text.add_argument("--out", required=True, help="output .npy (a .json description is written beside it)")
  text.add_argument("--model", default="all-MiniLM-L6-v2", help="encoder name or folder")
  text.add_argument("--batch-size", type=int, default=64)
  text.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
  text.add_argument("--no-progress", action="store_true")
  text.set_defaults(func=_text)
  tokens = verbs.add_parser("tokens", help="tokenise item text once for a fine-tuned text encoder "
                            "(model.text_encoder.tokens; needs .[text])")
  tokens.add_argument("data_path", help="MeLU's ML-1M release folder (movies_extrainfos.dat)")
  tokens.add_argument("--field", default="plot",
                      help="text column(s), comma-separated and joined: title, plot, genre, ... (default plot)")
  tokens.add_argument("--out", required=True, help="output .npz (ids, lengths, item ids, description)")
  tokens.add_argument("--model", default="all-MiniLM-L6-v2", help="encoder name or folder whose tokenizer to use")
  tokens.add_argument("--max-tokens", type=int, default=64,
                      help="ids per item, [CLS] and [SEP] included (default 64; runs may use fewer)")
  tokens.set_defaults(func=_tokens)
