"""One exception hierarchy for bbackup; every user-facing error carries its exit code.

    BbackupError (1)
    ├── UsageError (2)
    │   ├── InvalidRepositoryURL (16)
    │   └── NoPasswordSource (15)
    ├── RepositoryNotFound (10)
    ├── RepositoryLocked (11)
    ├── WrongPassword (12)
    ├── IntegrityError (13)
    ├── RepositoryAlreadyExists (14)
    ├── StorageError (1)
    │   ├── NotFound (1)
    │   ├── Transient (18)         retried by the retry wrapper; raised when retries run out
    │   │   └── Unreachable (18)   no connection at all; a short budget until one succeeds
    │   ├── Archived (19)          object sits in an archive tier and is not restored
    │   └── Permanent (1)
    │       ├── AccessDenied (17)
    │       ├── BucketNotFound (10)
    │       └── NoSpace (20)
    ├── NothingMatched (21)       a path, pattern or filter matches nothing
    └── Interrupted (130)

Lower layers raise these; `bbackup.cli` maps them to one-line messages and exit codes.
"""

from __future__ import annotations


class ExitCode:
    """The documented, stable exit codes (README: "Exit codes")."""

    OK = 0
    ERROR = 1
    USAGE = 2
    PARTIAL = 3
    REPOSITORY_NOT_FOUND = 10
    LOCKED = 11
    WRONG_PASSWORD = 12
    INTEGRITY = 13
    ALREADY_EXISTS = 14
    NO_PASSWORD = 15
    INVALID_URL = 16
    ACCESS_DENIED = 17
    UNREACHABLE = 18
    ARCHIVED = 19
    NO_SPACE = 20
    NO_MATCH = 21
    INTERRUPTED = 130


class BbackupError(Exception):
    """An error the user should see as one line, with a documented exit code."""

    exit_code: int = ExitCode.ERROR

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or type(self).__name__).strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class UsageError(BbackupError):
    """Invalid command line usage."""

    exit_code = ExitCode.USAGE


class InvalidRepositoryURL(UsageError):
    """The repository URL is malformed."""

    exit_code = ExitCode.INVALID_URL


class NoPasswordSource(UsageError):
    """No password source: set BBACKUP_PASSWORD, BBACKUP_PASSWORD_FILE, --password-file or
    --password-command, or run on a terminal."""

    exit_code = ExitCode.NO_PASSWORD


class RepositoryNotFound(BbackupError):
    """No repository exists at this location."""

    exit_code = ExitCode.REPOSITORY_NOT_FOUND


class RepositoryAlreadyExists(BbackupError):
    """A repository already exists at this location."""

    exit_code = ExitCode.ALREADY_EXISTS


class RepositoryLocked(BbackupError):
    """The repository is locked by another process."""

    exit_code = ExitCode.LOCKED


class WrongPassword(BbackupError):
    """Wrong password: no key in the repository opens with it."""

    exit_code = ExitCode.WRONG_PASSWORD


class IntegrityError(BbackupError):
    """Repository data is damaged or does not match its checksum."""

    exit_code = ExitCode.INTEGRITY


class NothingMatched(BbackupError):
    """A pattern or filter matches nothing."""

    exit_code = ExitCode.NO_MATCH


class Interrupted(BbackupError):
    """Interrupted."""

    exit_code = ExitCode.INTERRUPTED


class StorageError(BbackupError):
    """A storage operation failed."""


class NotFound(StorageError):
    """The object does not exist."""


class Transient(StorageError):
    """A storage operation failed in a way that may succeed when retried."""

    exit_code = ExitCode.UNREACHABLE


class Unreachable(Transient):
    """The storage endpoint cannot be reached (connection refused, connect timeout)."""


class Archived(StorageError):
    """The object sits in an archive storage class and must be restored before it is read."""

    exit_code = ExitCode.ARCHIVED


class Permanent(StorageError):
    """A storage operation failed and retrying will not help."""


class AccessDenied(Permanent):
    """Access denied by the storage provider: check the credentials and their permissions."""

    exit_code = ExitCode.ACCESS_DENIED


class BucketNotFound(Permanent):
    """The bucket does not exist."""

    exit_code = ExitCode.REPOSITORY_NOT_FOUND


class NoSpace(Permanent):
    """No space left on the storage device."""

    exit_code = ExitCode.NO_SPACE


__all__ = [
    "AccessDenied",
    "Archived",
    "BbackupError",
    "BucketNotFound",
    "ExitCode",
    "IntegrityError",
    "Interrupted",
    "InvalidRepositoryURL",
    "NoPasswordSource",
    "NoSpace",
    "NotFound",
    "NothingMatched",
    "Permanent",
    "RepositoryAlreadyExists",
    "RepositoryLocked",
    "RepositoryNotFound",
    "StorageError",
    "Transient",
    "Unreachable",
    "UsageError",
    "WrongPassword",
]
