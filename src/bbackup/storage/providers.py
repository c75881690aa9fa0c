"""What each S3-compatible provider can do, in one table: the lifecycle API, storage classes,
restore requests and object lock, with what to do instead where one is missing; and which
provider an endpoint belongs to. docs/providers.md is this table in prose.

Recorded from the providers' documentation as of 2026-12; a provider that gains a feature
needs one line changed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import urlsplit

from bbackup.errors import UsageError

_AWS_CLASSES = (
    "STANDARD",
    "STANDARD_IA",
    "INTELLIGENT_TIERING",
    "ONEZONE_IA",
    "GLACIER_IR",
    "GLACIER",
    "DEEP_ARCHIVE",
)
_AWS_MINIMUM_DAYS = MappingProxyType(
    {"STANDARD_IA": 30, "ONEZONE_IA": 30, "GLACIER_IR": 90, "GLACIER": 90, "DEEP_ARCHIVE": 180}
)


@dataclass(frozen=True, slots=True)
class Provider:
    """One S3-compatible store and what bbackup can ask of it."""

    #: Short name, as `--s3-provider` takes it.
    name: str
    #: Its name for people.
    label: str
    #: Endpoint host suffixes that identify it.
    hosts: tuple[str, ...]
    #: Storage classes a PUT may name (the first is the default); empty: the header is
    #: ignored or refused, every object is in the one class the store has.
    storage_classes: tuple[str, ...]
    #: Lifecycle transitions may name any tier (MinIO: remote tiers an admin added).
    any_transition_class: bool
    #: GET/PUT ?lifecycle in S3's format.
    lifecycle_api: bool
    #: Lifecycle `Transition` actions.
    lifecycle_transitions: bool
    #: Lifecycle `AbortIncompleteMultipartUpload`.
    lifecycle_abort_multipart: bool
    #: Lifecycle `NoncurrentVersionExpiration` (versioned buckets).
    lifecycle_noncurrent: bool
    #: Archived objects need a RestoreObject request and a wait before they are read.
    restore_requests: bool
    #: S3 Object Lock (retention dates on objects, x-amz-object-lock-* headers).
    object_lock: bool
    #: Days each class bills at least (deleting or moving earlier is charged the rest).
    minimum_days: Mapping[str, int] = field(default_factory=dict)
    #: What to do where the S3 lifecycle API falls short, said plainly.
    lifecycle_advice: str = ""

    @property
    def transition_classes(self) -> tuple[str, ...] | None:
        """Classes a lifecycle transition may name (None: any tier name)."""
        if self.any_transition_class:
            return None
        return tuple(c for c in self.storage_classes if c != "STANDARD")


AWS = Provider(
    name="aws",
    label="AWS S3",
    hosts=("amazonaws.com", "amazonaws.com.cn"),
    storage_classes=_AWS_CLASSES,
    any_transition_class=False,
    lifecycle_api=True,
    lifecycle_transitions=True,
    lifecycle_abort_multipart=True,
    lifecycle_noncurrent=True,
    restore_requests=True,
    object_lock=True,
    minimum_days=_AWS_MINIMUM_DAYS,
)

#: Every provider bbackup knows, by `--s3-provider` name. "s3" is an endpoint bbackup does
#: not recognise: it is spoken to as AWS is, and refuses what it cannot do.
PROVIDERS: Mapping[str, Provider] = MappingProxyType(
    {
        "aws": AWS,
        "minio": Provider(
            name="minio",
            label="MinIO",
            hosts=(),
            storage_classes=("STANDARD", "REDUCED_REDUNDANCY"),
            any_transition_class=True,
            lifecycle_api=True,
            lifecycle_transitions=True,
            lifecycle_abort_multipart=False,
            lifecycle_noncurrent=True,
            restore_requests=True,
            object_lock=True,
            lifecycle_advice=(
                "MinIO transitions objects to remote tiers, not storage classes: add a tier "
                "first (`mc ilm tier add minio|s3|azure|gcs ALIAS TIERNAME ...`) and name it "
                "in --transition TIERNAME:DAYS. MinIO does not take AbortIncompleteMultipart"
                "Upload rules; it removes stale multipart uploads itself after 24 hours "
                "(`mc admin config get ALIAS api stale_uploads_expiry`)."
            ),
        ),
        "b2": Provider(
            name="b2",
            label="Backblaze B2",
            hosts=("backblazeb2.com",),
            storage_classes=(),
            any_transition_class=False,
            # Since 2025 B2's S3 API takes lifecycle configurations and maps them onto
            # its own per-prefix rules: Expiration → hide, NoncurrentVersionExpiration →
            # delete, AbortIncompleteMultipartUpload → cancel unfinished large files.
            lifecycle_api=True,
            lifecycle_transitions=False,
            lifecycle_abort_multipart=True,
            lifecycle_noncurrent=True,
            restore_requests=False,
            object_lock=True,
            lifecycle_advice=(
                "Backblaze B2 has one storage class, so there is nothing to tier: its "
                "lifecycle rules (S3 API, B2 console Buckets > Lifecycle Settings, or the "
                "native API's lifecycleRules) only hide and delete file versions. B2 "
                "buckets are always versioned, so space freed by prune comes back only "
                "when old versions are deleted: use --noncurrent-days N (B2's "
                "daysFromHidingToDeleting), and never a rule with daysFromUploadingToHiding "
                "on the repository's prefix, which would hide live packs."
            ),
        ),
        "r2": Provider(
            name="r2",
            label="Cloudflare R2",
            hosts=("r2.cloudflarestorage.com",),
            storage_classes=("STANDARD", "STANDARD_IA"),
            any_transition_class=False,
            lifecycle_api=True,
            lifecycle_transitions=True,
            lifecycle_abort_multipart=True,
            lifecycle_noncurrent=False,
            restore_requests=False,
            object_lock=False,
            minimum_days=MappingProxyType({"STANDARD_IA": 30}),
            lifecycle_advice=(
                "Cloudflare R2 has two classes, Standard and Infrequent Access (STANDARD_IA, "
                "read directly, 30 days minimum): there is no archive tier. R2 has no "
                "versioning, so --noncurrent-days does not apply; for immutability use R2 "
                "bucket locks (dashboard or `wrangler r2 bucket lock add`), not S3 Object Lock."
            ),
        ),
        "wasabi": Provider(
            name="wasabi",
            label="Wasabi",
            hosts=("wasabisys.com",),
            storage_classes=(),
            any_transition_class=False,
            lifecycle_api=True,
            lifecycle_transitions=False,
            lifecycle_abort_multipart=False,
            lifecycle_noncurrent=True,
            restore_requests=False,
            object_lock=True,
            minimum_days=MappingProxyType({"STANDARD": 90}),
            lifecycle_advice=(
                "Wasabi has one storage class and bills every object for at least 90 days, "
                "so there is nothing to tier and pruning younger packs is charged as if "
                "they were kept: prefer a keep policy whose packs live 90 days or more. Its "
                "lifecycle API takes expiration rules only."
            ),
        ),
        "gcs": Provider(
            name="gcs",
            label="Google Cloud Storage (S3 interoperability API)",
            hosts=("storage.googleapis.com",),
            storage_classes=("STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE"),
            any_transition_class=False,
            lifecycle_api=False,
            lifecycle_transitions=False,
            lifecycle_abort_multipart=False,
            lifecycle_noncurrent=False,
            restore_requests=False,
            object_lock=False,
            minimum_days=MappingProxyType({"NEARLINE": 30, "COLDLINE": 90, "ARCHIVE": 365}),
            lifecycle_advice=(
                "Google Cloud Storage's XML API does not take S3 lifecycle configurations. "
                "Set the bucket's lifecycle with `gcloud storage buckets update gs://BUCKET "
                "--lifecycle-file=FILE` (SetStorageClass actions with a matchesPrefix of the "
                "repository's data/ prefix); NEARLINE, COLDLINE and ARCHIVE are read directly, "
                "without restore requests, at a retrieval fee. For immutability use bucket "
                "retention policies, not S3 Object Lock."
            ),
        ),
        "s3": Provider(
            name="s3",
            label="an S3-compatible store bbackup does not recognise",
            hosts=(),
            storage_classes=_AWS_CLASSES,
            any_transition_class=False,
            lifecycle_api=True,
            lifecycle_transitions=True,
            lifecycle_abort_multipart=True,
            lifecycle_noncurrent=True,
            restore_requests=True,
            object_lock=True,
            minimum_days=_AWS_MINIMUM_DAYS,
            lifecycle_advice=(
                "bbackup does not recognise this endpoint and speaks to it as to AWS S3; if "
                "it is MinIO, Backblaze B2, Cloudflare R2, Wasabi or Google Cloud Storage, "
                "say so with --s3-provider (or BBACKUP_S3_PROVIDER)."
            ),
        ),
    }
)


def detect_provider(endpoint_url: str | None, explicit: str | None = None) -> Provider:
    """The provider of an S3 endpoint: `explicit` (`--s3-provider`) if given, else from the
    endpoint's host; no endpoint is AWS; a host bbackup does not recognise is "s3"."""
    if explicit:
        name = explicit.strip().lower()
        if name not in PROVIDERS:
            raise UsageError(
                f"--s3-provider {explicit!r}: not one of {', '.join(sorted(PROVIDERS))}"
            )
        return PROVIDERS[name]
    if not endpoint_url:
        return AWS
    host = urlsplit(endpoint_url if "://" in endpoint_url else f"//{endpoint_url}").hostname or ""
    host = host.lower().rstrip(".")
    for provider in PROVIDERS.values():
        if any(host == suffix or host.endswith(f".{suffix}") for suffix in provider.hosts):
            return provider
    return PROVIDERS["s3"]
