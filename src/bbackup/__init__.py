"""bbackup (B-Backup Pro): encrypted, deduplicated off-site backups to S3-compatible storage."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
