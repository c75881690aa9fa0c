variable "region" {
  description = "AWS region of the bucket."
  type        = string
  default     = "us-east-1"
}

variable "bucket" {
  description = "Name of the bucket to create."
  type        = string
}

variable "prefix" {
  description = "Key prefix of the repository in the bucket: the repository URL is s3://BUCKET/PREFIX."
  type        = string
  default     = "bbackup"
  validation {
    condition     = length(var.prefix) > 0 && !startswith(var.prefix, "/") && !endswith(var.prefix, "/")
    error_message = "The prefix is not empty and has no leading or trailing '/': the IAM policies are scoped to it."
  }
}

variable "name" {
  description = "Prefix of the IAM policy names."
  type        = string
  default     = "bbackup"
}

variable "transitions" {
  description = <<-EOT
    Where data/ packs go, and when (days after upload): the same ladder as
    `bbackup lifecycle plan --transition CLASS:DAYS ...`. Check a new ladder with that
    command first: it knows S3's transition rules and minimum durations.
  EOT
  type = list(object({
    storage_class = string
    days          = number
  }))
  default = [
    { storage_class = "STANDARD_IA", days = 30 },
    { storage_class = "GLACIER_IR", days = 90 },
  ]
  validation {
    condition     = length(var.transitions) > 0
    error_message = "Give at least one transition; without tiering, `bbackup lifecycle apply` alone manages the clean-up rules."
  }
}

variable "abort_multipart_days" {
  description = "Abort multipart uploads unfinished after this many days (null: no such rule)."
  type        = number
  default     = 1
}

variable "noncurrent_days" {
  description = "Delete replaced and deleted object versions after this many days (null: keep them)."
  type        = number
  default     = 30
}

variable "versioning" {
  description = "Keep replaced and deleted objects as noncurrent versions (a backup credential can overwrite objects; versions keep the originals)."
  type        = bool
  default     = true
}

variable "object_lock" {
  description = "Create the bucket with S3 Object Lock (implies versioning; cannot be turned off later)."
  type        = bool
  default     = false
}

variable "object_lock_mode" {
  description = "Default retention mode: GOVERNANCE or COMPLIANCE."
  type        = string
  default     = "GOVERNANCE"
  validation {
    condition     = contains(["GOVERNANCE", "COMPLIANCE"], var.object_lock_mode)
    error_message = "object_lock_mode is GOVERNANCE or COMPLIANCE."
  }
}

variable "object_lock_days" {
  description = "Default retention of new objects in days (0: none; bbackup sets each object's retention itself)."
  type        = number
  default     = 0
}
