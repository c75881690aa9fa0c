"""`bbackup key list|add|remove|passwd|export|import`: manage the passwords that open a
repository, and keep its master key for the day every key file is lost."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from bbackup.cli.key_cost import KdfMemoryOpt, KdfTimeOpt
from bbackup.cli.opening import open_stack, run_async, with_repo
from bbackup.cli.options import GlobalOptions, repo_command
from bbackup.cli.output import echo, emit_json
from bbackup.cli.password import (
    prompt_password,
    read_password_file,
    resolve_new_password,
    resolve_password,
)
from bbackup.crypto.key_export import parse_export, render_json, render_paper
from bbackup.crypto.keys import KdfCost
from bbackup.errors import IntegrityError, NoPasswordSource, UsageError
from bbackup.repository.keys import (
    add_key,
    change_password,
    export_key,
    import_key,
    list_keys,
    remove_key,
)

NewPasswordFile = Annotated[
    str | None,
    typer.Option(envvar="BBACKUP_NEW_PASSWORD_FILE", help="Read the new password from a file."),
]
ExportPasswordFile = Annotated[
    str | None,
    typer.Option(
        envvar="BBACKUP_EXPORT_PASSWORD_FILE",
        help="Read the export's own password from a file (else BBACKUP_EXPORT_PASSWORD, "
        "else asked on the terminal).",
    ),
]


def register(app: typer.Typer) -> None:
    key_app = typer.Typer(help="Manage repository keys (passwords).", no_args_is_help=True)
    app.add_typer(key_app, name="key")

    @repo_command(key_app, "list", help="List keys.")
    def key_list(opts: GlobalOptions) -> None:
        keys = with_repo(opts, list_keys, load_index=False)
        if opts.json:
            emit_json(
                {
                    "event": "keys",
                    "keys": [{"id": k.key_id, "current": k.current, **k.details} for k in keys],
                }
            )
            return
        echo(f"{' ':1} {'ID':<10} {'User':<12} {'Host':<20} Created")
        for k in keys:
            d = k.details
            echo(
                f"{'*' if k.current else ' '} {k.key_id[:8]:<10} {d.get('username') or '':<12} "
                f"{d.get('hostname') or '':<20} "
                + (f"damaged: {d['damaged']}" if "damaged" in d else str(d.get("created")))
            )

    @repo_command(key_app, "add", help="Add a password.")
    def key_add(
        opts: GlobalOptions,
        new_password_file: NewPasswordFile = None,
        kdf_memory: KdfMemoryOpt = None,
        kdf_time: KdfTimeOpt = None,
    ) -> None:
        kdf = KdfCost(kdf_memory, kdf_time)
        key_id = with_repo(
            opts,
            lambda repo: add_key(repo, resolve_new_password(new_password_file), kdf),
            load_index=False,
        )
        _done(opts, "key_added", key_id, f"added key {key_id[:8]}")

    @repo_command(key_app, "remove", help="Remove a key by ID.")
    def key_remove(
        opts: GlobalOptions, key_id: Annotated[str, typer.Argument(help="Key ID prefix.")]
    ) -> None:
        removed = with_repo(opts, lambda repo: remove_key(repo, key_id), load_index=False)
        _done(opts, "key_removed", removed, f"removed key {removed[:8]}")

    @repo_command(key_app, "passwd", help="Change the password of the key in use.")
    def key_passwd(
        opts: GlobalOptions,
        new_password_file: NewPasswordFile = None,
        kdf_memory: KdfMemoryOpt = None,
        kdf_time: KdfTimeOpt = None,
    ) -> None:
        kdf = KdfCost(kdf_memory, kdf_time)
        key_id = with_repo(
            opts,
            lambda repo: change_password(repo, resolve_new_password(new_password_file), kdf),
            load_index=False,
        )
        _done(opts, "password_changed", key_id, f"password changed (new key {key_id[:8]})")

    @repo_command(
        key_app,
        "export",
        help="Write the master key, protected by its own password, for disaster day.",
    )
    def key_export(
        opts: GlobalOptions,
        out: Annotated[str, typer.Option("--out", "-o", help="File to write (- for stdout).")],
        export_password_file: ExportPasswordFile = None,
        paper: Annotated[
            bool, typer.Option("--paper", help="A printable text form, checksummed per line.")
        ] = False,
        kdf_memory: KdfMemoryOpt = None,
        kdf_time: KdfTimeOpt = None,
    ) -> None:
        kdf = KdfCost(kdf_memory, kdf_time)
        if out != "-" and os.path.lexists(out):
            raise UsageError(f"{out} exists: refusing to overwrite a key export")
        export_password = _export_password(export_password_file, confirm=True)
        export = with_repo(
            opts, lambda repo: export_key(repo, export_password, kdf), load_index=False
        )
        data = render_paper(export).encode() if paper else render_json(export)
        if out == "-":
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            return
        _write_private(out, data)
        if opts.json:
            emit_json({"event": "key_exported", "repository_id": export.repository_id, "out": out})
        else:
            echo(
                f"exported the master key of repository {export.repository_id[:8]} to {out}; "
                "keep it away from the machine and from the storage credentials"
            )

    @repo_command(
        key_app,
        "import",
        help="Add a key file for the repository password from a key export "
        "(works when every key file is lost).",
    )
    def key_import(
        opts: GlobalOptions,
        file: Annotated[str, typer.Argument(help="The key export (JSON or paper form).")],
        export_password_file: ExportPasswordFile = None,
        kdf_memory: KdfMemoryOpt = None,
        kdf_time: KdfTimeOpt = None,
    ) -> None:
        kdf = KdfCost(kdf_memory, kdf_time)
        try:
            with open(file, "rb") as f:
                export = parse_export(f.read())
        except OSError as exc:
            raise UsageError(f"cannot read key export {file}: {exc.strerror}") from exc
        except IntegrityError as exc:
            raise IntegrityError(f"{file}: {exc.message}") from None
        export_password = _export_password(export_password_file, confirm=False)
        password = resolve_password(
            opts.password_file, opts.password_command, confirm=True, prompt="Repository password"
        )
        if not password:
            raise UsageError("an empty password is not allowed")
        stack = open_stack(opts)

        async def main() -> str:
            try:
                return await import_key(
                    stack, export, export_password, password, kdf, source=f"key export {file}"
                )
            finally:
                await stack.storage.aclose()

        key_id = run_async(main())
        _done(
            opts,
            "key_imported",
            key_id,
            f"imported the key of repository {export.repository_id[:8]}: new key {key_id[:8]} "
            "opens it with the repository password",
        )


def _export_password(password_file: str | None, *, confirm: bool) -> str:
    """The key export's own password: from a file, else BBACKUP_EXPORT_PASSWORD, else asked
    on the terminal (twice when it is new); never empty."""
    if password_file:
        try:
            value = read_password_file(password_file)
        except OSError as exc:
            raise UsageError(
                f"cannot read export password file {password_file}: {exc.strerror}"
            ) from exc
    elif (env := os.environ.get("BBACKUP_EXPORT_PASSWORD")) is not None:
        value = env
    else:
        try:
            value = prompt_password("Export password", confirm=confirm)
        except NoPasswordSource:
            raise NoPasswordSource(
                "no export password: pass --export-password-file or set "
                "BBACKUP_EXPORT_PASSWORD, or run on a terminal"
            ) from None
    if not value:
        raise UsageError("an empty export password is not allowed")
    return value


def _write_private(path: str, data: bytes) -> None:
    """Write a new file only its owner can read; never replace one."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{path} exists: refusing to overwrite a key export") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(path)
        raise


def _done(opts: GlobalOptions, event: str, key_id: str, text: str) -> None:
    if opts.json:
        emit_json({"event": event, "id": key_id})
    else:
        echo(text)
