"""`bbackup lifecycle plan|apply|show`: the bucket's lifecycle rules that tier a repository's
data/ packs, abort unfinished multipart uploads and expire noncurrent versions."""

from __future__ import annotations

import json
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

import typer

from bbackup.cli.opening import run_async
from bbackup.cli.options import GlobalOptions, repo_command
from bbackup.cli.output import echo, emit_json, warn_event
from bbackup.errors import UsageError
from bbackup.ops.lifecycle import (
    BucketLifecycle,
    LifecyclePlan,
    LifecycleResult,
    apply_lifecycle,
    plan_lifecycle,
    show_lifecycle,
)
from bbackup.ops.lifecycle_changes import ADD, CHANGE, describe_rule
from bbackup.ops.lifecycle_rules import Ladder, lifecycle_configuration, parse_transition
from bbackup.storage import Provider, StorageStack, open_storage

T = TypeVar("T")

TransitionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--transition",
        "-t",
        metavar="CLASS:DAYS",
        help="Move data/ packs to CLASS DAYS days after upload (repeat: STANDARD_IA:30 "
        "GLACIER:90 DEEP_ARCHIVE:365).",
    ),
]
AbortDaysOpt = Annotated[
    int,
    typer.Option(
        "--abort-multipart-days",
        min=0,
        help="Abort multipart uploads unfinished after this many days (0: no such rule).",
    ),
]
NoncurrentOpt = Annotated[
    int | None,
    typer.Option(
        "--noncurrent-days",
        min=1,
        help="Delete replaced and deleted object versions after this many days "
        "(versioned buckets; default: keep them).",
    ),
]
ProviderOpt = Annotated[
    str | None,
    typer.Option(
        "--s3-provider",
        envvar="BBACKUP_S3_PROVIDER",
        help="aws, minio, b2, r2, wasabi or gcs (default: from the endpoint's host).",
    ),
]


def register(app: typer.Typer) -> None:
    lifecycle_app = typer.Typer(
        help="Manage the bucket's lifecycle rules (tiering of data/, clean-up).",
        no_args_is_help=True,
    )
    app.add_typer(lifecycle_app, name="lifecycle")

    @repo_command(
        lifecycle_app,
        "plan",
        help="Print the lifecycle rules for a ladder as S3 JSON; touches nothing.",
    )
    def plan_cmd(
        opts: GlobalOptions,
        transition: TransitionOpt = None,
        abort_multipart_days: AbortDaysOpt = 1,
        noncurrent_days: NoncurrentOpt = None,
        s3_provider: ProviderOpt = None,
    ) -> None:
        stack = _open_bucket(opts, s3_provider)
        plan = _plan(stack, transition, abort_multipart_days, noncurrent_days)
        _print_notes(plan, opts.json)
        document = lifecycle_configuration(plan.rules)
        echo(json.dumps(document) if opts.json else json.dumps(document, indent=2))

    @repo_command(
        lifecycle_app,
        "apply",
        help="Merge the rules for a ladder into the bucket's, keeping rules bbackup did not "
        "write, and print what changes.",
    )
    def apply_cmd(
        opts: GlobalOptions,
        transition: TransitionOpt = None,
        abort_multipart_days: AbortDaysOpt = 1,
        noncurrent_days: NoncurrentOpt = None,
        s3_provider: ProviderOpt = None,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", "-n", help="Only print what would change.")
        ] = False,
    ) -> None:
        stack = _open_bucket(opts, s3_provider)
        plan = _plan(stack, transition, abort_multipart_days, noncurrent_days)
        _print_notes(plan, opts.json)
        result = _run(
            stack, apply_lifecycle(_bucket(stack), stack.url.prefix, plan, dry_run=dry_run)
        )
        _print_apply(stack, result, dry_run, opts.json)

    @repo_command(lifecycle_app, "show", help="Explain the bucket's lifecycle rules in words.")
    def show_cmd(opts: GlobalOptions, s3_provider: ProviderOpt = None) -> None:
        stack = _open_bucket(opts, s3_provider)
        provider = _provider(stack)
        if not provider.lifecycle_api:
            raise UsageError(
                f"{provider.label} has no S3 lifecycle API: bbackup cannot read its rules. "
                f"{provider.lifecycle_advice}"
            )
        prefix = stack.url.prefix
        explained = _run(stack, show_lifecycle(_bucket(stack), prefix))
        if opts.json:
            emit_json(
                {
                    "event": "lifecycle",
                    **_where(stack),
                    "rules": [
                        {"rule": e.rule, "description": e.words, "hazards": e.hazards}
                        for e in explained
                    ],
                }
            )
            return
        bucket = stack.url.bucket
        if not explained:
            echo(
                f"bucket {bucket} ({provider.label}) has no lifecycle rules: the repository's "
                "packs stay in the class they were written in. `bbackup lifecycle plan "
                "--transition CLASS:DAYS` shows rules to add."
            )
            return
        count = len(explained)
        echo(f"bucket {bucket} ({provider.label}): {count} lifecycle rule{'s' * (count != 1)}")
        for e in explained:
            echo(f"- {e.words}")
            for hazard in e.hazards:
                echo(f"  WARNING: {hazard}")


def _open_bucket(opts: GlobalOptions, s3_provider: str | None) -> StorageStack:
    if not opts.repo:
        raise UsageError("no repository given: pass --repo or set BBACKUP_REPOSITORY")
    options = opts.storage_options()
    options.s3_provider = s3_provider
    stack = open_storage(opts.repo, options)
    if stack.profile.provider is None:
        raise UsageError(
            f"{stack.url} is not in an S3 bucket: lifecycle rules belong to S3 buckets "
            "(s3://BUCKET/PREFIX)"
        )
    return stack


def _provider(stack: StorageStack) -> Provider:
    provider = stack.profile.provider
    assert provider is not None  # _open_bucket refused every other store
    return provider


def _bucket(stack: StorageStack) -> BucketLifecycle:
    from bbackup.storage.s3 import S3Storage

    backend = stack.backend
    if not isinstance(backend, S3Storage):  # only S3 stacks have a provider
        raise UsageError(f"{stack.url} is not in an S3 bucket")
    return backend


def _run(stack: StorageStack, work: Coroutine[Any, Any, T]) -> T:
    """Run one bucket request to its end and close the storage whatever happens."""

    async def main() -> T:
        try:
            return await work
        finally:
            await stack.storage.aclose()

    return run_async(main())


def _plan(
    stack: StorageStack,
    transitions: list[str] | None,
    abort_multipart_days: int,
    noncurrent_days: int | None,
) -> LifecyclePlan:
    ladder = Ladder(
        tuple(parse_transition(t) for t in transitions or ()),
        abort_multipart_days or None,
        noncurrent_days,
    )
    return plan_lifecycle(stack.url.prefix, ladder, _provider(stack))


def _print_notes(plan: LifecyclePlan, as_json: bool) -> None:
    for note in plan.notes:
        warn_event(note if as_json else f"note: {note}", as_json)


def _where(stack: StorageStack) -> dict[str, Any]:
    return {
        "bucket": stack.url.bucket,
        "prefix": stack.url.prefix,
        "provider": _provider(stack).name,
    }


def _print_apply(
    stack: StorageStack, result: LifecycleResult, dry_run: bool, as_json: bool
) -> None:
    for hazard in result.hazards:
        warn_event(f"warning: {hazard}", as_json)
    prefix = stack.url.prefix
    if as_json:
        emit_json(
            {
                "event": "lifecycle_apply",
                **_where(stack),
                "dry_run": dry_run,
                "applied": result.applied,
                "changes": [c.to_dict() for c in result.changes],
                "rules": result.rules,
                "notes": result.plan.notes,
                "hazards": result.hazards,
            }
        )
        return
    if not result.changes:
        echo(f"no change: bucket {stack.url.bucket} already has these lifecycle rules")
        return
    marks = {ADD: "+", CHANGE: "~"}
    for change in result.changes:
        mark = marks.get(change.kind, "-")
        rule = change.after if change.after is not None else change.before
        assert rule is not None
        echo(f"{mark} {describe_rule(rule, prefix)}")
        if change.kind == CHANGE and change.before is not None:
            echo(f"    was: {describe_rule(change.before, prefix).split(': ', 1)[1]}")
    kept = [
        r for r in result.rules if str(r.get("ID", "")) not in {c.rule_id for c in result.changes}
    ]
    for rule in kept:
        echo(f"= {describe_rule(rule, prefix)}")
    counts: dict[str, int] = {}
    for change in result.changes:
        counts[change.kind] = counts.get(change.kind, 0) + 1
    rules = ", ".join(f"{kind} {n} rule{'s' * (n != 1)}" for kind, n in counts.items())
    if dry_run:
        echo(f"dry run: nothing written; apply would {rules}")
    else:
        echo(f"applied to bucket {stack.url.bucket}: {rules}")
