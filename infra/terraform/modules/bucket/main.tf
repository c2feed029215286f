# One of PloyD's data buckets (logs, artifacts, caches): KMS-encrypted with a bucket key,
# all public access blocked, ACLs disabled, TLS required, versioned with superseded
# versions expiring quickly, current objects expiring after expiration_days, access logs
# to the deployment's access-log bucket.

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40.0, < 7.0.0"
    }
  }
}

variable "bucket" {
  description = "Bucket name."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket))
    error_message = "bucket must be a valid S3 bucket name."
  }
}

variable "purpose" {
  description = "What the bucket holds (logs, artifacts, caches): tag and access-log prefix."
  type        = string

  validation {
    condition     = contains(["logs", "artifacts", "caches"], var.purpose)
    error_message = "purpose must be logs, artifacts or caches."
  }
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key that encrypts the objects."
  type        = string
}

variable "expiration_days" {
  description = "Days after which current objects are deleted."
  type        = number

  validation {
    condition     = var.expiration_days >= 1
    error_message = "expiration_days must be at least 1."
  }
}

variable "noncurrent_days" {
  description = "Days after which overwritten or deleted object versions are removed for good."
  type        = number

  validation {
    condition     = var.noncurrent_days >= 1
    error_message = "noncurrent_days must be at least 1."
  }
}

variable "access_log_bucket" {
  description = "Bucket (name) that receives this bucket's S3 server access logs."
  type        = string
}

variable "tags" {
  description = "Tags of the bucket."
  type        = map(string)
  default     = {}
}

resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV_AWS_144:Cross-region replication doubles storage cost for CI logs, artifacts and caches, which a pipeline re-run re-creates; versioning and KMS already guard against loss and tampering.
  #checkov:skip=CKV2_AWS_62:No consumer of bucket event notifications: PloyD writes and reads these objects itself.
  bucket = var.bucket
  tags   = merge(var.tags, { "ployd:bucket" = var.purpose })
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket                  = aws_s3_bucket.this.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_versioning" "this" {
  bucket = aws_s3_bucket.this.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    id     = "expire-${var.purpose}"
    status = "Enabled"

    filter {}

    expiration {
      days = var.expiration_days
    }

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

resource "aws_s3_bucket_logging" "this" {
  bucket        = aws_s3_bucket.this.id
  target_bucket = var.access_log_bucket
  target_prefix = "s3/${var.purpose}/"
}

data "aws_iam_policy_document" "this" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.this.arn, "${aws_s3_bucket.this.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  bucket = aws_s3_bucket.this.id
  policy = data.aws_iam_policy_document.this.json

  depends_on = [aws_s3_bucket_public_access_block.this]
}

output "id" {
  description = "Bucket name."
  value       = aws_s3_bucket.this.id
}

output "arn" {
  description = "Bucket ARN."
  value       = aws_s3_bucket.this.arn
}
