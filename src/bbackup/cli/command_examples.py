"""The examples every command's --help ends with, in one table (`PlaceholderGroup` adds
them), so that a new command gets its examples by one entry here; the help test fails on a
command without any."""

from __future__ import annotations

#: Command path (`"key add"`) → example command lines.
EXAMPLES: dict[str, tuple[str, ...]] = {
    "init": (
        "bbackup init -r /srv/backup",
        "BBACKUP_PASSWORD_FILE=~/.bbackup-pw bbackup init -r s3://bucket/repo",
    ),
    "backup": (
        "bbackup backup -r s3://bucket/repo /home /etc --exclude '*.tmp' --tag nightly",
        "bbackup backup -r /srv/backup ~/work --type full --json",
    ),
    "snapshots": (
        "bbackup snapshots -r /srv/backup --host web1",
        "bbackup snapshots -r /srv/backup --json | jq -r '.[] | .short_id + \" \" + .time'",
    ),
    "ls": (
        "bbackup ls -r /srv/backup latest",
        "bbackup ls -r /srv/backup 4f2a9c1e /home/ann/docs --long",
        "bbackup ls -r /srv/backup latest --json | jq -r 'select(.type == \"file\") | .path'",
    ),
    "check": (
        "bbackup check -r s3://bucket/repo",
        "bbackup check -r s3://bucket/repo --read-data-subset 10%",
    ),
    "unlock": (
        "bbackup unlock -r s3://bucket/repo",
        "bbackup unlock -r s3://bucket/repo --remove-all",
    ),
    "restore": (
        "bbackup restore -r s3://bucket/repo latest --target /mnt/restore",
        "bbackup restore -r /srv/backup 4f2a9c1e -t /tmp/r --include '/home/ann/*.pdf'",
    ),
    "dump": (
        "bbackup dump -r /srv/backup latest /etc/fstab",
        "bbackup dump -r /srv/backup latest /home/ann > ann.tar",
    ),
    "prune": ("bbackup prune -r s3://bucket/repo --dry-run", "bbackup prune -r /srv/backup"),
    "forget": (
        "bbackup forget -r /srv/backup --keep-daily 7 --keep-weekly 5 --dry-run",
        "bbackup forget -r /srv/backup --keep-within 90d --prune",
    ),
    "copy": (
        "bbackup copy -r s3://offsite/repo --from-repo /srv/backup",
        "bbackup copy -r s3://offsite/repo --from-repo /srv/backup latest --host web1",
    ),
    "stats": (
        "bbackup stats -r s3://bucket/repo",
        "bbackup stats -r s3://bucket/repo --mode raw-data --cost",
    ),
    "diff": (
        "bbackup diff -r /srv/backup 4f2a9c1e latest",
        "bbackup diff -r /srv/backup 4f2a9c1e latest --metadata --json",
    ),
    "find": (
        "bbackup find -r /srv/backup '*.pdf'",
        "bbackup find -r /srv/backup '/home/*/.ssh/id_*' --newest 2026-12-01T00:00Z",
    ),
    "tag": (
        "bbackup tag -r /srv/backup latest --add keep",
        "bbackup tag -r /srv/backup --host web1 --set nightly",
    ),
    "rewrite": (
        "bbackup rewrite -r /srv/backup --exclude '/home/ann/.env' --dry-run",
        "bbackup rewrite -r /srv/backup --exclude '*.key' --forget && bbackup prune -r /srv/backup",
    ),
    "cat": ("bbackup cat -r /srv/backup config", "bbackup cat -r /srv/backup snapshot latest"),
    "list": ("bbackup list -r /srv/backup snapshots", "bbackup list -r /srv/backup blobs"),
    "cache": ("bbackup cache", "bbackup cache --cleanup --max-age 60"),
    "mount": (
        "bbackup mount -r /srv/backup /mnt/backup",
        "bbackup mount -r s3://bucket/repo /mnt/backup --cache-size 256",
    ),
    "drill": (
        "bbackup drill -r s3://bucket/repo",
        "bbackup drill -r /srv/backup latest --files 20 --compare-source --json",
    ),
    "locks extend": (
        "bbackup locks extend -r s3://bucket/repo --dry-run",
        "bbackup locks extend -r s3://bucket/repo --margin 10d --json",
    ),
    "repair versions": (
        "bbackup repair versions -r s3://bucket/repo --as-of 2026-12-01T00:00Z --dry-run",
    ),
    "run": ("bbackup run home", "bbackup run home --json --wait"),
    "service": ("bbackup service", "bbackup service --config /etc/bbackup/config.toml"),
    "status": ("bbackup status", "bbackup status home --json"),
    "completion": (
        "bbackup completion bash > ~/.local/share/bash-completion/completions/bbackup",
        'bbackup completion zsh > "${fpath[1]}/_bbackup"',
        "bbackup completion fish > ~/.config/fish/completions/bbackup.fish",
    ),
    "key list": ("bbackup key list -r /srv/backup",),
    "key add": ("BBACKUP_NEW_PASSWORD_FILE=~/.pw2 bbackup key add -r /srv/backup",),
    "key remove": ("bbackup key remove -r /srv/backup 3fa1c2",),
    "key passwd": ("bbackup key passwd -r /srv/backup",),
    "key export": (
        "bbackup key export -r /srv/backup --out master-key.json",
        "bbackup key export -r /srv/backup --out - --paper | lpr",
    ),
    "key import": ("bbackup key import -r s3://bucket/repo master-key.json",),
    "repair index": ("bbackup repair index -r /srv/backup --dry-run",),
    "repair packs": ("bbackup repair packs -r /srv/backup --pack 5e0f1a",),
    "repair snapshots": ("bbackup repair snapshots -r /srv/backup --forget",),
    "lifecycle plan": ("bbackup lifecycle plan -r s3://bucket/repo -t STANDARD_IA:30",),
    "lifecycle apply": (
        "bbackup lifecycle apply -r s3://bucket/repo -t STANDARD_IA:30 -t DEEP_ARCHIVE:365",
    ),
    "lifecycle show": ("bbackup lifecycle show -r s3://bucket/repo",),
    "schedule install": ("bbackup schedule install --user", "bbackup schedule install --cron"),
    "schedule remove": ("bbackup schedule remove --user",),
    "schedule show": ("bbackup schedule show",),
    "config check": ("bbackup config check", "bbackup config check --json"),
}


def examples_epilog(command: str) -> str | None:
    """The "Examples:" block of `command`'s help, kept as written (click's `\\b`)."""
    lines = EXAMPLES.get(command)
    if not lines:
        return None
    return "Examples:\n\n\b\n" + "\n".join(f"  {line}" for line in lines)
