"""forget + prune on a local repository: space comes back, what is kept still restores,
and the safety rails (dry run, remove-all refusal, two-phase deletion) hold."""

from __future__ import annotations

from pathlib import Path

from cli_harness import Cli, tree_size
from prune_harness import History, MiB, ok, restore_files, snapshot_ids, stored_packs


def test_forget_with_prune_reclaims_the_space_of_forgotten_snapshots(
    tmp_path: Path, cli: Cli, four_snapshots: History
) -> None:
    repo, newest = four_snapshots.repo, four_snapshots.ids[-1]
    before = tree_size(repo)

    result = ok(cli("forget", "-r", repo, "--keep-last", "1", "--prune", "--grace", "0s", "--json"))

    assert result.event("forget")["removed"] == 3
    reclaimed = before - tree_size(repo)
    # Three distinct 2 MiB random files went away (plus small trees, headers, snapshots).
    assert 3 * 2 * MiB <= reclaimed <= 3 * 2 * MiB + 256 * 1024, reclaimed
    assert result.event("prune")["bytes_reclaimed"] >= 3 * 2 * MiB
    assert snapshot_ids(cli, repo) == {newest}
    ok(cli("check", "-r", repo, "--read-data"))
    restored = restore_files(cli, repo, newest, tmp_path / "restore", four_snapshots.src)
    assert restored == four_snapshots.files[newest]


def test_forget_dry_run_lists_every_decision_and_deletes_nothing(
    cli: Cli, four_snapshots: History
) -> None:
    repo = four_snapshots.repo
    objects_before = sorted(p for p in repo.rglob("*") if p.is_file())

    result = ok(cli("forget", "-r", repo, "--keep-last", "1", "--dry-run", "--json"))

    event = result.event("forget")
    assert event["dry_run"] is True
    assert event["removed"] == 0
    [group] = event["groups"]
    decisions = {s["id"]: s for s in group["snapshots"]}
    assert set(decisions) == set(four_snapshots.ids)
    newest = decisions.pop(four_snapshots.ids[-1])
    assert newest["keep"] is True
    assert any("last" in reason for reason in newest["reasons"]), newest
    assert all(d["keep"] is False and d["reasons"] == [] for d in decisions.values())
    assert sorted(p for p in repo.rglob("*") if p.is_file()) == objects_before
    assert snapshot_ids(cli, repo) == set(four_snapshots.ids)


def test_forget_dry_run_human_output_says_keep_or_remove_per_snapshot(
    cli: Cli, four_snapshots: History
) -> None:
    result = ok(cli("forget", "-r", four_snapshots.repo, "--keep-last", "1", "--dry-run"))

    lines = result.stdout.splitlines()
    for position, snapshot_id in enumerate(four_snapshots.ids):
        [line] = [ln for ln in lines if snapshot_id[:8] in ln]
        assert line.split()[0] == ("keep" if position == 3 else "remove"), line
    assert "would remove 3 snapshots" in result.stdout
    assert snapshot_ids(cli, four_snapshots.repo) == set(four_snapshots.ids)


def test_forget_refuses_to_remove_every_snapshot_of_a_group_unless_allowed(
    cli: Cli, four_snapshots: History
) -> None:
    repo = four_snapshots.repo

    refused = cli("forget", "-r", repo, "--keep-tag", "no-snapshot-has-this")

    assert refused.exit_code != 0, refused
    assert "--allow-remove-all" in refused.stderr
    assert snapshot_ids(cli, repo) == set(four_snapshots.ids)

    allowed = ok(
        cli("forget", "-r", repo, "--keep-tag", "no-snapshot-has-this", "--allow-remove-all")
    )

    assert "removed 4 snapshots" in allowed.stdout
    assert snapshot_ids(cli, repo) == set()


def test_forget_without_a_policy_is_refused(cli: Cli, four_snapshots: History) -> None:
    result = cli("forget", "-r", four_snapshots.repo)

    assert result.exit_code != 0, result
    assert "--keep-last" in result.stderr
    assert snapshot_ids(cli, four_snapshots.repo) == set(four_snapshots.ids)


def test_prune_with_default_grace_only_marks_and_a_later_run_deletes(
    tmp_path: Path, cli: Cli, four_snapshots: History
) -> None:
    repo, history = four_snapshots.repo, four_snapshots
    ok(cli("forget", "-r", repo, "--keep-last", "2"))
    kept = history.ids[2:]
    packs_before = stored_packs(repo)

    first = ok(cli("prune", "-r", repo, "--json")).event("prune")

    assert stored_packs(repo) == packs_before
    assert first["bytes_reclaimed"] == 0
    actions = {d["action"] for d in first["decisions"]}
    assert actions == {"mark"}, first["decisions"]
    # The data packs of the two forgotten 2 MiB files are among the marked ones.
    assert sum(d["size"] for d in first["decisions"]) >= 2 * 2 * MiB
    ok(cli("check", "-r", repo, "--read-data"))
    for n, snapshot_id in enumerate(kept):
        restored = restore_files(cli, repo, snapshot_id, tmp_path / f"marked-{n}", history.src)
        assert restored == history.files[snapshot_id]

    # Within the grace period a second run keeps them marked and deletes nothing.
    second = ok(cli("prune", "-r", repo, "--json")).event("prune")

    assert stored_packs(repo) == packs_before
    assert {d["action"] for d in second["decisions"]} == {"keep-marked"}

    # Once the grace period is over (here: 0s), the marked packs go.
    size_marked = tree_size(repo)
    third = ok(cli("prune", "-r", repo, "--grace", "0s", "--json")).event("prune")

    assert {d["action"] for d in third["decisions"]} == {"delete"}
    assert size_marked - tree_size(repo) >= 2 * 2 * MiB
    assert stored_packs(repo) < packs_before
    ok(cli("check", "-r", repo, "--read-data"))
    for n, snapshot_id in enumerate(kept):
        restored = restore_files(cli, repo, snapshot_id, tmp_path / f"deleted-{n}", history.src)
        assert restored == history.files[snapshot_id]
