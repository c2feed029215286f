# Runners: one EC2 launch template per hardware class. The service (PLOYD_EXECUTOR=ec2)
# launches runners only from these templates and picks the instance type per job.
# IMDSv2 only (hop limit 1: containers on the runner cannot reach the instance's
# credentials), encrypted root volume, no public IP (runners go in private subnets),
# the outbound-only security group, and an instance profile that may only pull job images.

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
# The runners' instance profile. Runners never call S3 (the service presigns their
# uploads and downloads) nor EC2, Secrets Manager or IAM; the one AWS call the agent
# makes with the instance role is an ECR login for a job's `image:` in ECR
# (ecr:GetAuthorizationToken), and the pulls of the repositories in runner_ecr_repository_arns.
# ---------------------------------------------------------------------------------------

resource "aws_iam_role" "runner" {
  name_prefix        = "${var.name}-runner-"
  description        = "PloyD ${var.name} runners: ECR logins and pulls of the job images' repositories only"
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
  count = length(var.runner_ecr_repository_arns) > 0 ? 1 : 0

  name   = "ployd-runner"
  role   = aws_iam_role.runner.id
  policy = data.aws_iam_policy_document.runner.json
}

data "aws_iam_policy_document" "runner" {
  # ecr:GetAuthorizationToken has no resource-level permissions: AWS accepts only "*".
  statement {
    sid       = "EcrLoginTokenResourceStarRequiredByAws"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid       = "PullJobImages"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
    resources = var.runner_ecr_repository_arns
  }
}
