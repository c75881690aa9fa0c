"""Snapshot, Tree and Node models, their storage, and the retention policy (pure)."""
