"""Teachers: large encoders whose vectors are the targets a student is distilled from.

Load one by name with ``pipeline.models.load_teacher`` (``e5``, ``use`` or a model folder).
"""
