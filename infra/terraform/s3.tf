# S3: one data bucket that PloyD's service uses for job logs, artifacts and caches
# (PLOYD_S3_BUCKET: the app keeps them apart by key, PIPELINE/JOB/ATTEMPT.log,
# artifacts/..., caches/..., and expires artifacts and unused caches itself, after
# PLOYD_ARTIFACT_EXPIRE_IN and PLOYD_CACHE_TTL, which ECS sets from the variables),
# plus a bucket that receives the load balancer's and the data bucket's access logs. All
# encrypted, all private, TLS only. Runners never reach S3: they upload and download
# through URLs the service presigns.

locals {
  bucket_names = {
    for k in ["logs", "access-logs"] :
    k => "${var.name}-${k}-${local.account_id}-${local.region}"
  }
}

# ---------------------------------------------------------------------------------------
# The data bucket (see modules/bucket). Its address stays module.logs_bucket, the name
# it always had, so that an existing deployment keeps its bucket and its logs.
# ---------------------------------------------------------------------------------------

module "logs_bucket" {
  source = "./modules/bucket"

  bucket      = local.bucket_names["logs"]
  purpose     = "logs"
  kms_key_arn = aws_kms_key.main.arn
  # the backstop: the service removes expired artifacts and unused caches before this
  expiration_days   = max(var.log_expiration_days, var.artifact_expiration_days, var.cache_expiration_days)
  noncurrent_days   = 7
  access_log_bucket = aws_s3_bucket_policy.access_logs.bucket # after the policy that lets S3 log
  tags              = local.tags
}

locals {
  data_buckets = {
    logs = module.logs_bucket
  }
}

# ---------------------------------------------------------------------------------------
# Access-log bucket (load balancer access logs, S3 server access logs)
# ---------------------------------------------------------------------------------------

resource "aws_s3_bucket" "access_logs" {
  #checkov:skip=CKV_AWS_18:This is the access-log target bucket; logging it to itself would loop, and logging it elsewhere needs another bucket with the same problem.
  #checkov:skip=CKV_AWS_144:Access logs are kept for audit in this region only; replicating them doubles cost without protecting the service.
  #checkov:skip=CKV_AWS_145:Elastic Load Balancing writes access logs only to buckets encrypted with SSE-S3 (AES256), not SSE-KMS; the bucket is still encrypted at rest.
  #checkov:skip=CKV2_AWS_62:No consumer of bucket event notifications for access logs.
  bucket = local.bucket_names["access-logs"]
  tags   = merge(local.tags, { "ployd:bucket" = "access-logs" })
}

resource "aws_s3_bucket_public_access_block" "access_logs" {
  bucket                  = aws_s3_bucket.access_logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id

  rule {
    id     = "expire-access-logs"
    status = "Enabled"

    filter {}

    expiration {
      days = var.log_retention_days
    }

    noncurrent_version_expiration {
      noncurrent_days = 7
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.access_logs]
}

resource "aws_s3_bucket_policy" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  policy = data.aws_iam_policy_document.access_logs.json

  depends_on = [aws_s3_bucket_public_access_block.access_logs]
}

data "aws_elb_service_account" "current" {}

data "aws_iam_policy_document" "access_logs" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.access_logs.arn, "${aws_s3_bucket.access_logs.arn}/*"]

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

  # Regions opened before August 2022 deliver ALB logs from the regional ELB account;
  # newer regions from the log-delivery service principal. Both may only write under alb/.
  statement {
    sid       = "ElbAccessLogsRegionalAccount"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.access_logs.arn}/alb/AWSLogs/${local.account_id}/*"]

    principals {
      type        = "AWS"
      identifiers = [data.aws_elb_service_account.current.arn]
    }
  }

  statement {
    sid       = "ElbAccessLogsDeliveryService"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.access_logs.arn}/alb/AWSLogs/${local.account_id}/*"]

    principals {
      type        = "Service"
      identifiers = ["logdelivery.elasticloadbalancing.amazonaws.com"]
    }
  }

  statement {
    sid       = "S3ServerAccessLogs"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.access_logs.arn}/s3/*"]

    principals {
      type        = "Service"
      identifiers = ["logging.s3.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:s3:::${local.bucket_names["logs"]}"]
    }
  }
}
