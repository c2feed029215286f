# PloyD on AWS: ECS Fargate service behind an HTTPS load balancer, PostgreSQL on RDS,
# S3 for logs/artifacts/caches, EC2 launch templates for the runners, and IAM that lets
# the service launch and terminate only its own runners.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition

  public_url = "https://${var.domain_name}"

  runner_subnet_ids = length(var.runner_subnet_ids) > 0 ? var.runner_subnet_ids : var.private_subnet_ids

  github_enabled = var.github_app_id != null
  gitlab_enabled = var.gitlab_enabled

  # The tags PloyD's EC2 executor puts on every runner (app/adapters/ec2): ployd:managed
  # = "true" and ployd:pool = the hardware. The service role may launch only with them in
  # the request and terminate only instances that carry them.
  managed_tag_key = "ployd:managed"
  pool_tag_key    = "ployd:pool"
  # ployd:deployment = PLOYD_DEPLOYMENT (var.name): the reaper of this deployment touches
  # only its own runners, and the service role may terminate only those.
  deployment_tag_key = "ployd:deployment"

  tags = merge(var.tags, {
    "ployd:deployment" = var.name
    "managed-by"       = "terraform"
  })
}
