# One customer-managed key encrypts everything this module stores: S3 objects, the
# database, its Performance Insights, Secrets Manager secrets, CloudWatch logs and the
# runners' EBS volumes. Rotation is on; every IAM grant on it is narrowed by kms:ViaService.

resource "aws_kms_key" "main" {
  description             = "PloyD ${var.name}: S3, RDS, Secrets Manager, CloudWatch Logs, runner EBS"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = local.tags
}

resource "aws_kms_alias" "main" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.main.key_id
}

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_109:This is a KMS key policy, not an identity policy: its first statement is AWS's default key-policy statement that lets the account manage the key through IAM (without it the key can become unmanageable); resource "*" in a key policy means this key only.
  #checkov:skip=CKV_AWS_111:Same KMS key policy: "*" is this key, the principal is this account only, and the service statement is limited by encryption context to this deployment's log groups.
  #checkov:skip=CKV_AWS_356:Same KMS key policy: a key policy's resource can only be "*" (the key itself).
  # AWS's default key policy statement: the account (through IAM policies) administers and
  # uses the key. Without it the key could become unmanageable. In a key policy, resource
  # "*" means "this key"; kms:* is what AWS documents for this statement.
  statement {
    sid       = "AccountAdministersKeyThroughIAM"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  # CloudWatch Logs encrypts this deployment's log groups (and only those) with the key.
  statement {
    sid = "CloudWatchLogsUsesKeyForPloydLogGroups"
    actions = [
      "kms:Encrypt",
      "kms:Decrypt",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:DescribeKey",
    ]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values = [
        "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/ployd/${var.name}/*",
        "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/aws/rds/instance/${var.name}/*",
        "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/aws/ecs/containerinsights/${var.name}/*",
      ]
    }
  }

  # EC2 Auto Scaling is not used; EC2 itself creates encrypted runner volumes on behalf
  # of the service role through grants (see the service role's KmsForRunnerVolumes).
}
