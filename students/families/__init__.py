"""The student's sequence encoders, one module per family (the shape of sentence-transformers' ``models/``).

Each module gives ``FIELDS`` (the ``StudentConfig`` fields it reads, beside the shared ones), ``build(model, config)``
(registers its layers on the model under the names saved folders use, returns the width of its token states),
``encode(model, input_ids, mask)`` (→ token states to pool, and the token states a token head reads) and
``arch_name(config)``. ``students.modeling.StudentModel`` shares the token table, pooling and heads among them.
"""

from __future__ import annotations

from types import ModuleType

from students.families import bag, convolution, cut, recurrent, static, transformer

FAMILIES: dict[str, ModuleType] = {"gru": recurrent, "lstm": recurrent, "transformer": transformer,
                                   "cnn": convolution, "ffn": bag, "static": static, "static-cnn": static,
                                   "teacher-cut": cut}
