# Secrets Manager: everything secret that PloyD reads from its environment. ECS injects
# them into the container (task definition `secrets`), so they never appear in the task
# definition, the console or `describe-task-definition`. All are encrypted with the CMK.
#
# Rotation: the webhook secrets, admin token and secret key are generated here and rotate
# with `terraform apply -replace=random_password.<name>` (then paste the new webhook
# secret into the forge); the GitHub App key and GitLab token are issued by the forge and
# rotate there. No rotation Lambda is deployed, hence the CKV2_AWS_57 skips below.

resource "random_password" "db" {
  length  = 40
  special = false # goes into a URL: letters and digits only
}

resource "random_password" "admin_token" {
  length  = 48
  special = false
}

resource "random_password" "secret_key" {
  length  = 64
  special = false
}

resource "random_password" "github_webhook_secret" {
  length  = 40
  special = false
}

resource "random_password" "gitlab_webhook_secret" {
  length  = 40
  special = false
}

locals {
  database_url = format(
    "postgresql+psycopg://%s:%s@%s:%d/%s?sslmode=require",
    aws_db_instance.main.username,
    random_password.db.result,
    aws_db_instance.main.address,
    aws_db_instance.main.port,
    aws_db_instance.main.db_name,
  )

  # env var => secret value; the GitHub and GitLab ones only when that forge is enabled.
  secret_values = merge(
    {
      PLOYD_DATABASE_URL = local.database_url
      PLOYD_ADMIN_TOKEN  = random_password.admin_token.result
      PLOYD_SECRET_KEY   = random_password.secret_key.result
    },
    local.github_enabled ? {
      PLOYD_GITHUB_PRIVATE_KEY    = var.github_private_key
      PLOYD_GITHUB_WEBHOOK_SECRET = random_password.github_webhook_secret.result
    } : {},
    local.gitlab_enabled ? {
      PLOYD_GITLAB_TOKEN          = var.gitlab_token
      PLOYD_GITLAB_WEBHOOK_SECRET = random_password.gitlab_webhook_secret.result
    } : {},
  )

  # The set of names must be known at plan time (for_each), so it is built from the
  # toggles rather than from the (sensitive) values.
  secret_names = toset(concat(
    ["PLOYD_DATABASE_URL", "PLOYD_ADMIN_TOKEN", "PLOYD_SECRET_KEY"],
    local.github_enabled ? ["PLOYD_GITHUB_PRIVATE_KEY", "PLOYD_GITHUB_WEBHOOK_SECRET"] : [],
    local.gitlab_enabled ? ["PLOYD_GITLAB_TOKEN", "PLOYD_GITLAB_WEBHOOK_SECRET"] : [],
  ))
}

resource "aws_secretsmanager_secret" "env" {
  #checkov:skip=CKV2_AWS_57:No rotation Lambda: generated secrets rotate with terraform apply -replace (see the comment at the top of secrets.tf), forge-issued ones rotate at the forge; a Lambda rotating PLOYD_DATABASE_URL alone would desynchronise it from the RDS password.
  for_each = local.secret_names

  name                    = "${var.name}/${lower(replace(each.key, "_", "-"))}"
  description             = "PloyD ${var.name}: ${each.key}, injected into the service task"
  kms_key_id              = aws_kms_key.main.arn
  recovery_window_in_days = 7
  tags                    = local.tags
}

resource "aws_secretsmanager_secret_version" "env" {
  for_each = local.secret_names

  secret_id     = aws_secretsmanager_secret.env[each.key].id
  secret_string = local.secret_values[each.key]
}
