output "repository_url" {
  description = "The repository URL for bbackup --repo."
  value       = "s3://${aws_s3_bucket.repository.id}/${var.prefix}"
}

output "backup_policy_arn" {
  description = "Attach to the credential of the machines that back up."
  value       = aws_iam_policy.backup.arn
}

output "maintenance_policy_arn" {
  description = "Attach to the credential that runs init, forget, prune, check and lifecycle."
  value       = aws_iam_policy.maintenance.arn
}

output "restore_policy_arn" {
  description = "Attach to a credential that may only restore."
  value       = aws_iam_policy.restore.arn
}
