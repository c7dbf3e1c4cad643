"""Student for `metarec distill`: MeLU's field embeddings (16 per field), no transformer.

Command:  metarec distill runs/field_transformer_ml1m --teacher melu1_ft --student experiments/students/small_fields.py
"""


def get_config(teacher_config):
  c = teacher_config
  c.model.extractor = "fields"
  c.model.embed_dim = 16
  c.model.user_mlp = ()
  c.model.item_mlp = ()
  return c
