"""Student embedders distilled from teacher labels (the student issue fills this package)."""
