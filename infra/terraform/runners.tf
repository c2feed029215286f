# Runners: one EC2 launch template per hardware class. The service (PLOYD_EXECUTOR=ec2)
# launches runners only from these templates and picks the instance type per job.
# IMDSv2 only (hop limit 1: containers on the runner cannot reach the instance's
# credentials), encrypted root volume, no public IP (runners go in private subnets),
# the outbound-only security group, and an instance profile limited to S3 prefixes.

locals {
  runner_tags = {
    for k, _ in var.runner_classes : k => {
      (local.managed_tag_key) = "true"
      "ployd:class"           = k
    }
  }
}

# The root device name differs between AMIs (/dev/xvda on Amazon Linux, /dev/sda1 on
# Ubuntu and the Deep Learning AMIs): read it from the AMI so that the encrypted volume
# below really is the root volume.
data "aws_ami" "runner" {
  for_each = var.runner_classes

  filter {
    name   = "image-id"
    values = [each.value.ami_id]
  }
}

resource "aws_launch_template" "runner" {
  for_each = var.runner_classes

  name_prefix            = "${var.name}-runner-${each.key}-"
  description            = "PloyD ${var.name} runner, hardware class ${each.key}"
  image_id               = each.value.ami_id
  update_default_version = true
  ebs_optimized          = true

  instance_initiated_shutdown_behavior = "terminate"

  iam_instance_profile {
    arn = aws_iam_instance_profile.runner.arn
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "enabled"
  }

  # No network_interfaces block: the executor passes SubnetId (and SecurityGroupIds) in
  # RunInstances, which EC2 refuses together with template network interfaces. A runner
  # gets a public IP only in a runner subnet that auto-assigns one: the default runner
  # subnets are the private ones.
  vpc_security_group_ids = [aws_security_group.runners.id]

  block_device_mappings {
    device_name = data.aws_ami.runner[each.key].root_device_name

    ebs {
      volume_size           = each.value.volume_size_gb
      volume_type           = "gp3"
      encrypted             = true
      kms_key_id            = aws_kms_key.main.arn
      delete_on_termination = true
    }
  }

  monitoring {
    enabled = true
  }

  # The executor passes ployd:managed and ployd:pool in its RunInstances
  # TagSpecifications: the service role may launch only with those in the request.
  tag_specifications {
    resource_type = "instance"
    tags          = merge(local.tags, local.runner_tags[each.key], { Name = "${var.name}-runner-${each.key}" })
  }

  tag_specifications {
    resource_type = "volume"
    tags          = merge(local.tags, local.runner_tags[each.key])
  }

  tags = merge(local.tags, { "ployd:class" = each.key })
}

# ---------------------------------------------------------------------------------------
# The runners' instance profile: S3 under runner_s3_prefix in this deployment's buckets,
# the CMK through S3 only, nothing else (no EC2, no Secrets Manager, no IAM).
# ---------------------------------------------------------------------------------------

resource "aws_iam_role" "runner" {
  name_prefix        = "${var.name}-runner-"
  description        = "PloyD ${var.name} runners: their S3 prefixes only"
  assume_role_policy = data.aws_iam_policy_document.runner_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "runner_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_instance_profile" "runner" {
  name_prefix = "${var.name}-runner-"
  role        = aws_iam_role.runner.name
  tags        = local.tags
}

resource "aws_iam_role_policy" "runner" {
  name   = "ployd-runner"
  role   = aws_iam_role.runner.id
  policy = data.aws_iam_policy_document.runner.json
}

data "aws_iam_policy_document" "runner" {
  statement {
    sid     = "ListOwnPrefix"
    actions = ["s3:ListBucket"]
    resources = [
      for b in values(local.data_buckets) : b.arn
    ]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [var.runner_s3_prefix, "${var.runner_s3_prefix}*"]
    }
  }

  # Logs: write only (a runner streams its job's log; it never reads others').
  statement {
    sid       = "WriteLogs"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload"]
    resources = ["${module.logs_bucket.arn}/${var.runner_s3_prefix}*"]
  }

  # Artifacts and caches: read and write under the prefix (a job restores a cache and
  # downloads its dependencies' artifacts).
  statement {
    sid     = "ReadWriteArtifactsAndCaches"
    actions = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"]
    resources = [
      "${module.artifacts_bucket.arn}/${var.runner_s3_prefix}*",
      "${module.caches_bucket.arn}/${var.runner_s3_prefix}*",
    ]
  }

  statement {
    sid       = "BucketKeyThroughS3Only"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
  }
}
