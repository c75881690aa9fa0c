"""Backup operations: archiver, restorer, checker, retention and pruning over a Repository."""
