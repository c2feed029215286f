# IAM for the service. Two roles, as ECS intends:
#   - the execution role: ECS itself pulls the image, writes the container's logs and
#     reads this deployment's secrets to inject them;
#   - the task role: what PloyD's code may do. Launch runners only from PloyD's launch
#     templates and with PloyD's tags, tag only at launch, terminate only PloyD-tagged
#     instances, use only its own buckets. No wildcard action anywhere, and "*" resources
#     only for EC2 Describe* calls, which AWS does not let any policy scope to resources.

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:*"]
    }
  }
}

# ---------------------------------------------------------------------------------------
# Execution role
# ---------------------------------------------------------------------------------------

resource "aws_iam_role" "execution" {
  name_prefix        = "${var.name}-exec-"
  description        = "PloyD ${var.name}: ECS pulls the image, writes logs, injects secrets"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy" "execution" {
  name   = "ployd-execution"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

locals {
  # 123456789012.dkr.ecr.eu-west-1.amazonaws.com/ployd:0.1.0 => its repository's ARN
  ecr_image = regex("^(?:(?P<account>[0-9]{12})\\.dkr\\.ecr\\.(?P<region>[a-z0-9-]+)\\.amazonaws\\.com/(?P<repository>[a-z0-9._/-]+)[:@])?", var.image)
  ecr_repository_arn = local.ecr_image.account == null ? null : format(
    "arn:%s:ecr:%s:%s:repository/%s",
    local.partition, local.ecr_image.region, local.ecr_image.account, local.ecr_image.repository,
  )
}

data "aws_iam_policy_document" "execution" {
  # ecr:GetAuthorizationToken has no resource-level permissions: AWS accepts only "*".
  # It returns a registry login token; the pulls themselves are scoped below.
  dynamic "statement" {
    for_each = local.ecr_repository_arn != null ? [true] : []

    content {
      sid       = "EcrLoginTokenResourceStarRequiredByAws"
      actions   = ["ecr:GetAuthorizationToken"]
      resources = ["*"]
    }
  }

  # Pull only PloyD's repository when the image is in ECR (a public image needs nothing).
  dynamic "statement" {
    for_each = local.ecr_repository_arn != null ? [local.ecr_repository_arn] : []

    content {
      sid       = "PullPloydImage"
      actions   = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
      resources = [statement.value]
    }
  }

  statement {
    sid       = "WriteServiceLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.service.arn}:*"]
  }

  statement {
    sid       = "ReadOwnSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [for s in aws_secretsmanager_secret.env : s.arn]
  }

  statement {
    sid       = "DecryptOwnSecrets"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.main.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${local.region}.amazonaws.com"]
    }
  }
}

# ---------------------------------------------------------------------------------------
# Task role: PloyD's own permissions
# ---------------------------------------------------------------------------------------

resource "aws_iam_role" "task" {
  name_prefix        = "${var.name}-task-"
  description        = "PloyD ${var.name}: launch and terminate its runners, use its buckets"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy" "task" {
  name   = "ployd-service"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}

locals {
  secret_reference_prefix = coalesce(var.secret_reference_prefix, "${var.name}/jobs/")
  ec2_arn_prefix          = "arn:${local.partition}:ec2:${local.region}:${local.account_id}"
  launch_template_arns    = [for lt in aws_launch_template.runner : lt.arn]
  runner_ami_arns = distinct([
    for c in values(var.runner_classes) : "arn:${local.partition}:ec2:${local.region}::image/${c.ami_id}"
  ])
  runner_subnet_arns = [for s in local.runner_subnet_ids : "${local.ec2_arn_prefix}:subnet/${s}"]
}

data "aws_iam_policy_document" "task" {
  # RunInstances creates instances and volumes: only from PloyD's launch templates, only
  # with ployd:managed = true and a ployd:pool in the request, and only ployd:*, Name and
  # this module's tag keys.
  statement {
    sid     = "RunInstancesTaggedFromPloydTemplates"
    actions = ["ec2:RunInstances"]
    resources = [
      "${local.ec2_arn_prefix}:instance/*",
      "${local.ec2_arn_prefix}:volume/*",
    ]

    condition {
      test     = "ArnEquals"
      variable = "ec2:LaunchTemplate"
      values   = local.launch_template_arns
    }

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/${local.managed_tag_key}"
      values   = ["true"]
    }

    condition {
      test     = "Null"
      variable = "aws:RequestTag/${local.pool_tag_key}"
      values   = ["false"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/${local.deployment_tag_key}"
      values   = [var.name]
    }

    condition {
      test     = "ForAllValues:StringLike"
      variable = "aws:TagKeys"
      values   = distinct(concat(["ployd:*", "Name"], keys(local.tags)))
    }
  }

  # The other resources a launch touches, each named exactly where AWS allows it (the
  # templates, the runner subnets and security group, the runner AMIs), and only when
  # the launch uses one of PloyD's templates.
  statement {
    sid     = "RunInstancesOtherResourcesFromPloydTemplates"
    actions = ["ec2:RunInstances"]
    resources = concat(
      local.launch_template_arns,
      local.runner_subnet_arns,
      local.runner_ami_arns,
      [
        aws_security_group.runners.arn,
        "${local.ec2_arn_prefix}:network-interface/*",
        "${local.ec2_arn_prefix}:spot-instances-request/*",
      ],
    )

    condition {
      test     = "ArnEquals"
      variable = "ec2:LaunchTemplate"
      values   = local.launch_template_arns
    }
  }

  # Tags may be created only as part of RunInstances (the launch's TagSpecifications),
  # never on an existing resource: the service cannot tag someone else's instance into
  # its pool and then terminate it.
  statement {
    sid     = "CreateTagsOnlyAtLaunch"
    actions = ["ec2:CreateTags"]
    resources = [
      "${local.ec2_arn_prefix}:instance/*",
      "${local.ec2_arn_prefix}:volume/*",
      "${local.ec2_arn_prefix}:network-interface/*",
      "${local.ec2_arn_prefix}:spot-instances-request/*",
    ]

    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = ["RunInstances"]
    }
  }

  statement {
    sid       = "TerminateOnlyPloydRunners"
    actions   = ["ec2:TerminateInstances"]
    resources = ["${local.ec2_arn_prefix}:instance/*"]

    condition {
      test     = "StringEquals"
      variable = "ec2:ResourceTag/${local.managed_tag_key}"
      values   = ["true"]
    }

    condition {
      test     = "Null"
      variable = "ec2:ResourceTag/${local.pool_tag_key}"
      values   = ["false"]
    }

    # Another deployment's runners in the same account are not this one's to end.
    condition {
      test     = "StringEquals"
      variable = "ec2:ResourceTag/${local.deployment_tag_key}"
      values   = [var.name]
    }
  }

  # The launch templates carry the runner instance profile; launching one passes its role.
  statement {
    sid       = "PassRunnerRoleToEc2"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.runner.arn]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ec2.amazonaws.com"]
    }
  }

  # EC2 creates the runners' encrypted root volumes with the CMK on the caller's behalf.
  statement {
    sid = "KmsForRunnerVolumes"
    actions = [
      "kms:CreateGrant",
      "kms:Decrypt",
      "kms:DescribeKey",
      "kms:GenerateDataKeyWithoutPlaintext",
      "kms:ReEncryptFrom",
      "kms:ReEncryptTo",
    ]
    resources = [aws_kms_key.main.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["ec2.${local.region}.amazonaws.com"]
    }
  }

  # Read-only Describe calls. AWS supports no resource-level permissions (nor tag
  # conditions) on these EC2 Describe actions: a policy can grant them only on "*".
  # They reveal metadata, change nothing, and are listed one by one (no Describe*):
  # exactly those app/adapters/ec2 calls (tests/infra/test_terraform_iam.py checks both
  # ways), and the ones the issue-17 work adds, marked.
  statement {
    sid = "Ec2DescribeResourceStarRequiredByAws"
    actions = [
      "ec2:DescribeCapacityReservations", # the reservations' types, states, windows (ec2e)
      "ec2:DescribeImages",               # the AMI's root device and snapshot size
      "ec2:DescribeInstances",
      "ec2:DescribeInstanceTypeOfferings", # issue 17 (ec2a): type/AZ pairs that exist
      "ec2:DescribeLaunchTemplateVersions",
      "ec2:DescribeSpotPriceHistory", # spot prices, per region (issue 17, ec2d)
      "ec2:DescribeSubnets",
    ]
    resources = ["*"]
  }

  # On-demand prices per region (app/adapters/ec2/pricing.py); the Pricing API has no
  # resources: "*" is the only form. Without it PloyD uses the catalog's list prices.
  statement {
    sid       = "PricingResourceStarRequiredByAws"
    actions   = ["pricing:GetProducts"]
    resources = ["*"]
  }

  # GPU-ready AMIs named by AWS's public SSM parameters (resolve:ssm:/aws/service/...,
  # the Deep Learning AMIs'; issue 17, ec2b): read only those public parameters.
  statement {
    sid       = "ReadPublicAmiParameters"
    actions   = ["ssm:GetParameter", "ssm:GetParameters"]
    resources = ["arn:${local.partition}:ssm:${local.region}::parameter/aws/service/*"]
  }

  # Secrets that jobs name by reference (aws-sm:NAME, aws-ssm:/PATH), fetched when a job
  # starts: only under secret_reference_prefix, never this deployment's own secrets.
  statement {
    sid       = "ReadSecretReferences"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = ["arn:${local.partition}:secretsmanager:${local.region}:${local.account_id}:secret:${local.secret_reference_prefix}*"]
  }

  statement {
    sid       = "ReadParameterReferences"
    actions   = ["ssm:GetParameter"]
    resources = ["arn:${local.partition}:ssm:${local.region}:${local.account_id}:parameter/${local.secret_reference_prefix}*"]
  }

  # References encrypted with this deployment's key (an AWS managed key needs no grant).
  statement {
    sid       = "DecryptReferencesThroughTheirService"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.main.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${local.region}.amazonaws.com", "ssm.${local.region}.amazonaws.com"]
    }
  }

  # Without s3:ListBucket, S3 answers a read of a missing key 403 instead of 404: the
  # log and artifact stores tell "not there yet" from "refused" by it.
  statement {
    sid     = "ListOwnBuckets"
    actions = ["s3:ListBucket"]
    resources = [
      for b in values(local.data_buckets) : b.arn
    ]
  }

  statement {
    sid     = "ObjectsInOwnBuckets"
    actions = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = [
      for b in values(local.data_buckets) : "${b.arn}/*"
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
