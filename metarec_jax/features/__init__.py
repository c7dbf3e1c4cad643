"""Precomputed item features: text embeddings (dense fields) and token ids (tokens fields) cached on disk."""

from metarec_jax.features.text import (TEXT_FIELD, add_text_field, add_text_fields, embed_item_text, item_texts,
                                       load_text_features, parse_text_features)
from metarec_jax.features.tokens import (TOKENS_FIELD, add_tokens_field, load_tokens, tokenize_item_text,
                                         with_token_inputs)
