output "dashboard_url" {
  description = "PloyD's dashboard."
  value       = "${local.public_url}/"
}

output "github_webhook_url" {
  description = "Webhook URL to set in the GitHub App's settings."
  value       = "${local.public_url}/webhooks/github"
}

output "gitlab_webhook_url" {
  description = "Webhook URL to add to GitLab projects or groups (Settings > Webhooks)."
  value       = "${local.public_url}/webhooks/gitlab"
}

output "github_webhook_secret" {
  description = "Webhook secret to paste into the GitHub App (terraform output -raw github_webhook_secret)."
  value       = local.github_enabled ? random_password.github_webhook_secret.result : null
  sensitive   = true
}

output "gitlab_webhook_secret" {
  description = "Secret token to paste into GitLab's webhook settings (terraform output -raw gitlab_webhook_secret)."
  value       = local.gitlab_enabled ? random_password.gitlab_webhook_secret.result : null
  sensitive   = true
}

output "admin_token" {
  description = "PLOYD_ADMIN_TOKEN: the bearer token of PloyD's API."
  value       = random_password.admin_token.result
  sensitive   = true
}

output "load_balancer_dns_name" {
  description = "DNS name of the load balancer: point domain_name at it (CNAME or alias) when route53_zone_id is not set."
  value       = aws_lb.main.dns_name
}

output "certificate_validation_records" {
  description = "Nothing to do when route53_zone_id is set; otherwise the certificate_arn you passed is used as is."
  value       = var.route53_zone_id != null ? [for r in aws_route53_record.certificate_validation : r.fqdn] : []
}

output "buckets" {
  description = "S3 buckets by purpose: logs (PLOYD_S3_BUCKET: job logs, artifacts and caches), access-logs."
  value = merge(
    { for k, b in local.data_buckets : k => b.id },
    { "access-logs" = aws_s3_bucket.access_logs.bucket },
  )
}

output "runner_launch_templates" {
  description = "Launch template id per hardware class, with the \"default\" one (PLOYD_EC2_LAUNCH_TEMPLATES)."
  value       = local.launch_templates
}

output "runner_tag_keys" {
  description = "Tags the service must put on every runner at launch (ployd:managed = \"true\", ployd:pool = any); it may terminate only instances that carry them."
  value       = [local.managed_tag_key, local.pool_tag_key]
}

output "runner_security_group_id" {
  description = "Security group of the runners (outbound only)."
  value       = aws_security_group.runners.id
}

output "runner_instance_profile_arn" {
  description = "Instance profile of the runners."
  value       = aws_iam_instance_profile.runner.arn
}

output "database_endpoint" {
  description = "PostgreSQL endpoint (private; reachable from the service tasks only)."
  value       = aws_db_instance.main.endpoint
}

output "secret_arns" {
  description = "Secrets Manager ARN per injected environment variable."
  value       = { for k, s in aws_secretsmanager_secret.env : k => s.arn }
}

output "ecs_cluster_name" {
  description = "ECS cluster of the service."
  value       = aws_ecs_cluster.main.name
}

output "ecs_service_name" {
  description = "ECS service running PloyD."
  value       = aws_ecs_service.main.name
}

output "service_log_group" {
  description = "CloudWatch log group of the service."
  value       = aws_cloudwatch_log_group.service.name
}
