# The bucket of one bbackup repository at s3://BUCKET/PREFIX: private, optionally versioned
# and object-locked, with the lifecycle rules `bbackup lifecycle plan` writes for the same
# ladder (tests/infra/test_terraform.py keeps the two equal), and three least-privilege
# IAM policies: backup, maintenance, restore-only (policies/*.json).

resource "aws_s3_bucket" "repository" {
  bucket              = var.bucket
  object_lock_enabled = var.object_lock
}

resource "aws_s3_bucket_public_access_block" "repository" {
  bucket                  = aws_s3_bucket.repository.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "repository" {
  count  = var.versioning || var.object_lock ? 1 : 0
  bucket = aws_s3_bucket.repository.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_object_lock_configuration" "repository" {
  count  = var.object_lock && var.object_lock_days > 0 ? 1 : 0
  bucket = aws_s3_bucket.repository.id
  rule {
    default_retention {
      mode = var.object_lock_mode
      days = var.object_lock_days
    }
  }
  depends_on = [aws_s3_bucket_versioning.repository]
}

# Only PREFIX/data/ is ever transitioned: everything else (config, keys, index,
# snapshots, trees, locks) is read by every command and stays in STANDARD.
resource "aws_s3_bucket_lifecycle_configuration" "repository" {
  bucket     = aws_s3_bucket.repository.id
  depends_on = [aws_s3_bucket_versioning.repository]

  rule {
    id     = "bbackup-tiering:${var.prefix}/"
    status = "Enabled"
    filter {
      prefix = "${var.prefix}/data/"
    }
    dynamic "transition" {
      for_each = var.transitions
      content {
        days          = transition.value.days
        storage_class = transition.value.storage_class
      }
    }
  }

  dynamic "rule" {
    for_each = var.abort_multipart_days[*]
    content {
      id     = "bbackup-abort-multipart:${var.prefix}/"
      status = "Enabled"
      filter {
        prefix = "${var.prefix}/"
      }
      abort_incomplete_multipart_upload {
        days_after_initiation = rule.value
      }
    }
  }

  dynamic "rule" {
    for_each = var.noncurrent_days[*]
    content {
      id     = "bbackup-noncurrent:${var.prefix}/"
      status = "Enabled"
      filter {
        prefix = "${var.prefix}/"
      }
      noncurrent_version_expiration {
        noncurrent_days = rule.value
      }
    }
  }
}

resource "aws_iam_policy" "backup" {
  name        = "${var.name}-backup"
  description = "bbackup backup of s3://${var.bucket}/${var.prefix}: list, read, add; no delete but its own locks"
  policy      = templatefile("${path.module}/policies/backup.json", { bucket = var.bucket, prefix = var.prefix })
}

resource "aws_iam_policy" "maintenance" {
  name        = "${var.name}-maintenance"
  description = "bbackup maintenance of s3://${var.bucket}/${var.prefix}: init, forget, prune, check, lifecycle"
  policy      = templatefile("${path.module}/policies/maintenance.json", { bucket = var.bucket, prefix = var.prefix })
}

resource "aws_iam_policy" "restore" {
  name        = "${var.name}-restore"
  description = "bbackup restore from s3://${var.bucket}/${var.prefix}: list, read, thaw archived packs"
  policy      = templatefile("${path.module}/policies/restore.json", { bucket = var.bucket, prefix = var.prefix })
}
