"""Precomputed item features: text embeddings cached on disk, used as dense item fields."""

from metarec_jax.features.text import (TEXT_FIELD, add_text_field, embed_item_text, item_texts,
                                       load_text_features)
