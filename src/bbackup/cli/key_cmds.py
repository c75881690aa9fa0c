"""`bbackup key list|add|remove|passwd`: manage the passwords that open a repository."""

from __future__ import annotations

from typing import Annotated

import typer

from bbackup.cli.key_cost import KdfMemoryOpt, KdfTimeOpt
from bbackup.cli.opening import with_repo
from bbackup.cli.options import GlobalOptions, repo_command
from bbackup.cli.output import echo, emit_json
from bbackup.cli.password import resolve_new_password
from bbackup.crypto.keys import KdfCost
from bbackup.repository.keys import add_key, change_password, list_keys, remove_key

NewPasswordFile = Annotated[
    str | None,
    typer.Option(envvar="BBACKUP_NEW_PASSWORD_FILE", help="Read the new password from a file."),
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


def _done(opts: GlobalOptions, event: str, key_id: str, text: str) -> None:
    if opts.json:
        emit_json({"event": event, "id": key_id})
    else:
        echo(text)
