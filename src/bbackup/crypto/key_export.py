"""The key export (`bbackup key export|import`): a repository's master key wrapped under an
export password exactly as a key file wraps it (the same KDF and AES-256-GCM box), with
the repository ID, as a JSON file or as a printable paper form whose every line carries
its own checksum, so a typo is found line by line.

Both forms carry a checksum of their content, so a damaged export is told apart from a
wrong export password (which only the AEAD box can tell).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from dataclasses import dataclass
from typing import Any

import msgpack

from bbackup.crypto.kdf import KdfParams, UnsupportedKdf, params_from
from bbackup.crypto.keys import (
    KEY_FILE_VERSION,
    KeyFile,
    MasterKey,
    parse_key_file,
    seal_key_file,
    unwrap_key_file,
)
from bbackup.errors import IntegrityError, WrongPassword

EXPORT_TYPE = "bbackup-key-export"
EXPORT_VERSION = 1
PAPER_TITLE = "bbackup key export (paper form), version 1"
#: Base32 characters per paper line (20 bytes), shown in groups of four.
PAPER_LINE_CHARS = 32
#: Base32 characters of each line's checksum: 20 bits, so a typo slips through one time
#: in a million.
PAPER_CHECK_CHARS = 4
_PAPER_LINE = re.compile(rf"^\s*(\d+)\s+([A-Z2-7 ]+?)\s+([A-Z2-7]{{{PAPER_CHECK_CHARS}}})\s*$")
_PAPER_END = re.compile(r"^\s*end\s+(\d+)\s+lines?\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class KeyExport:
    """A master key wrapped under an export password, for the repository `repository_id`."""

    repository_id: str
    key_file: KeyFile
    created: str = ""

    def payload(self) -> bytes:
        """The canonical bytes both forms encode (and their checksums cover)."""
        packed: bytes = msgpack.packb(
            {
                "v": EXPORT_VERSION,
                "repo": bytes.fromhex(self.repository_id),
                "kdf": self.key_file.params.fields(),
                "salt": self.key_file.salt,
                "box": self.key_file.box,
            }
        )
        return packed


def seal_export(
    master: MasterKey, repository_id: str, export_password: str, params: KdfParams
) -> KeyExport:
    """Wrap `master` under `export_password` with the key file's KDF and AEAD."""
    sealed = parse_key_file(seal_key_file(master, export_password, params))
    return KeyExport(repository_id, sealed, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def open_export(
    export: KeyExport, export_password: str, source: str = "the key export"
) -> MasterKey:
    """The master key an export wraps; WrongPassword naming `source` if the export
    password does not open it (its content was checked when it was parsed)."""
    try:
        return unwrap_key_file(export.key_file, export_password)
    except WrongPassword:
        raise WrongPassword(f"wrong export password: it does not open {source}") from None


# ---- the JSON form ---------------------------------------------------------------------


def render_json(export: KeyExport) -> bytes:
    document = {
        "type": EXPORT_TYPE,
        "version": EXPORT_VERSION,
        "repository_id": export.repository_id,
        "created": export.created,
        **export.key_file.params.fields(),
        "salt": base64.b64encode(export.key_file.salt).decode(),
        "data": base64.b64encode(export.key_file.box).decode(),
        "checksum": hashlib.sha256(export.payload()).hexdigest(),
    }
    return (json.dumps(document, indent=2) + "\n").encode()


def _parse_json(text: str) -> KeyExport:
    try:
        document = json.loads(text)
        if not isinstance(document, dict) or document.get("type") != EXPORT_TYPE:
            raise IntegrityError("not a bbackup key export")
        if document.get("version") != EXPORT_VERSION:
            raise IntegrityError(f"unsupported key export version {document.get('version')!r}")
        key_file = _checked_key_file(
            params_from(document),
            base64.b64decode(document["salt"], validate=True),
            base64.b64decode(document["data"], validate=True),
        )
        repository_id = document["repository_id"]
        if not isinstance(repository_id, str) or len(bytes.fromhex(repository_id)) != 32:
            raise ValueError("the repository ID is 64 hex digits")
        export = KeyExport(repository_id, key_file, str(document["created"]))
        checksum = document["checksum"]
        payload = export.payload()
    except UnsupportedKdf as exc:
        raise IntegrityError(str(exc)) from None
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise IntegrityError("the key export is malformed") from exc
    if hashlib.sha256(payload).hexdigest() != checksum:
        raise IntegrityError("the key export is damaged: its content does not match its checksum")
    return export


# ---- the paper form --------------------------------------------------------------------


def _line_check(number: int, chars: str) -> str:
    """A line's checksum covers its number too, so swapped lines are caught."""
    digest = hashlib.sha256(f"{number}:{chars}".encode()).digest()
    return base64.b32encode(digest)[:PAPER_CHECK_CHARS].decode()


def render_paper(export: KeyExport) -> str:
    """The printable form: a header, numbered lines of base32 in groups of four, each
    with its checksum, and an end line with the count (so a lost last line is noticed)."""
    encoded = base64.b32encode(export.payload()).decode().rstrip("=")
    rows = [encoded[i : i + PAPER_LINE_CHARS] for i in range(0, len(encoded), PAPER_LINE_CHARS)]
    width = len(str(len(rows)))
    group_width = PAPER_LINE_CHARS + PAPER_LINE_CHARS // 4 - 1
    lines = [
        PAPER_TITLE,
        f"repository {export.repository_id}",
        f"created    {export.created}",
        "",
        "Type each numbered line exactly (spaces do not matter); the last group of each",
        "line is its checksum. Import: bbackup key import FILE",
        "",
    ]
    for number, row in enumerate(rows, 1):
        groups = " ".join(row[i : i + 4] for i in range(0, len(row), 4))
        lines.append(f"{number:0{width}d}  {groups:<{group_width}}  {_line_check(number, row)}")
    lines.append(f"end {len(rows)} lines")
    return "\n".join(lines) + "\n"


def _parse_paper(text: str) -> KeyExport:
    rows: dict[int, str] = {}
    expected: int | None = None
    for raw in text.splitlines():
        line = raw.upper() if raw.strip()[:1].isdigit() else raw
        if (end := _PAPER_END.match(raw)) is not None:
            expected = int(end.group(1))
            continue
        match = _PAPER_LINE.match(line)
        if match is None:
            if raw.strip()[:1].isdigit():
                raise IntegrityError(f"line {raw.split()[0]} of the key export is not readable")
            continue  # the title, the repository ID, instructions
        number, chars = int(match.group(1)), match.group(2).replace(" ", "")
        if match.group(3) != _line_check(number, chars):
            raise IntegrityError(
                f"line {number} of the key export does not match its checksum "
                f"(a typo on that line?)"
            )
        if number in rows:
            raise IntegrityError(f"line {number} of the key export appears twice")
        rows[number] = chars
    if expected is None:
        raise IntegrityError("the key export is incomplete: its 'end N lines' line is missing")
    missing = [n for n in range(1, expected + 1) if n not in rows]
    if missing or len(rows) != expected:
        shown = ", ".join(map(str, missing)) or "beyond the end"
        raise IntegrityError(f"the key export is incomplete: line(s) {shown} missing")
    encoded = "".join(rows[n] for n in range(1, expected + 1))
    try:
        payload = base64.b32decode(encoded + "=" * (-len(encoded) % 8))
        return _from_payload(payload)
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError("the key export is malformed") from exc


def _from_payload(payload: bytes) -> KeyExport:
    raw: dict[str, Any] = msgpack.unpackb(payload)
    if raw["v"] != EXPORT_VERSION:
        raise IntegrityError(f"unsupported key export version {raw['v']!r}")
    try:
        params = params_from(raw["kdf"])
    except UnsupportedKdf as exc:
        raise IntegrityError(str(exc)) from None
    repo, salt, box = raw["repo"], raw["salt"], raw["box"]
    if not type(repo) is type(salt) is type(box) is bytes or len(repo) != 32:
        raise ValueError("the repository ID is 32 bytes, the salt and box bytes")
    return KeyExport(repo.hex(), _checked_key_file(params, salt, box))


def _checked_key_file(params: KdfParams, salt: bytes, box: bytes) -> KeyFile:
    """The wrapped key, with every check a key file gets before a password is tried
    (parameters in range, salt and box long enough): an export is one in other clothes."""
    document = {
        "version": KEY_FILE_VERSION,
        **params.fields(),
        "salt": base64.b64encode(salt).decode(),
        "data": base64.b64encode(box).decode(),
    }
    return parse_key_file(json.dumps(document).encode())


def parse_export(data: bytes) -> KeyExport:
    """A key export in either form; IntegrityError saying what is wrong (for the paper
    form: which line) if it is damaged or not a key export at all."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise IntegrityError("not a bbackup key export (not text)") from None
    if text.lstrip().startswith("{"):
        return _parse_json(text)
    if PAPER_TITLE.split(",")[0] not in text:
        raise IntegrityError("not a bbackup key export")
    return _parse_paper(text)
