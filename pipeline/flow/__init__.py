"""The data flow, no Kafka: sources → parse → embed → cluster (with its index window and durable state).

    raw bytes ──parse──► Document ──embed──► EmbeddedDocument ──cluster──► EventAssignment

Every module here is a pure core: importing one loads no Kafka client, faust, torch or transformers
(``tests/unit/test_layout.py`` checks it).
"""

STAGE_NAMES = ("parse", "embed", "cluster")  # the stages, in flow order: the one place that names them
