"""Student for `metarec distill`: MeLU's field embeddings (16 per field), no transformer.

Command:  metarec distill runs/field_transformer_ml1m --teacher melu1_ft --seed 0 --steps 300 \
            --student experiments/students/small_fields.py
Measured (seed 0, shared 2-core CPU, 315 s): feature error 2.33 -> 0.52; MAE lost warm -0.0009,
user_cold -0.0031, item_cold +0.0227, user_item_cold +0.0174; adapting and scoring 256 warm
tasks 1458 ms (teacher, 471K extractor params) -> 223 ms (student, 222K incl. adapters).
"""


def get_config(teacher_config):
  c = teacher_config
  c.model.extractor = "fields"
  c.model.embed_dim = 16
  c.model.user_mlp = ()
  c.model.item_mlp = ()
  return c
