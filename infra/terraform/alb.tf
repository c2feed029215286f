# The HTTPS entry point: an internet-facing Application Load Balancer (GitHub.com and
# GitLab.com must reach the webhooks) that terminates TLS 1.2+ and forwards to the tasks.

resource "aws_acm_certificate" "main" {
  count = var.route53_zone_id != null ? 1 : 0

  domain_name       = var.domain_name
  validation_method = "DNS"
  tags              = local.tags

  lifecycle {
    create_before_destroy = true
  }
}

locals {
  certificate_validation = var.route53_zone_id == null ? {} : {
    for o in aws_acm_certificate.main[0].domain_validation_options : o.domain_name => o
  }
}

resource "aws_route53_record" "certificate_validation" {
  # Keyed by the (known) domain name, so that the plan does not wait on the certificate.
  for_each = var.route53_zone_id == null ? toset([]) : toset([var.domain_name])

  zone_id         = var.route53_zone_id
  name            = local.certificate_validation[each.key].resource_record_name
  type            = local.certificate_validation[each.key].resource_record_type
  records         = [local.certificate_validation[each.key].resource_record_value]
  ttl             = 300
  allow_overwrite = true
}

resource "aws_acm_certificate_validation" "main" {
  count = var.route53_zone_id != null ? 1 : 0

  certificate_arn         = aws_acm_certificate.main[0].arn
  validation_record_fqdns = [for r in aws_route53_record.certificate_validation : r.fqdn]
}

locals {
  certificate_arn = var.route53_zone_id != null ? aws_acm_certificate_validation.main[0].certificate_arn : var.certificate_arn
}

resource "aws_lb" "main" {
  #checkov:skip=CKV2_AWS_28:WAF is opt-in through var.waf_web_acl_arn (associated below when set). Every route is authenticated by PloyD itself (HMAC/token-checked webhooks, admin token on the API), and AWS's common managed rule set blocks bodies over 8 KB, which breaks GitHub push webhooks, so no ACL is imposed by default.
  #checkov:skip=CKV2_AWS_76:Follows from the CKV2_AWS_28 skip: no web ACL is imposed by the module, so there is none to check for the Log4j rule set; an operator's var.waf_web_acl_arn should include AWSManagedRulesKnownBadInputsRuleSet.
  name                       = var.name
  internal                   = false
  load_balancer_type         = "application"
  security_groups            = [aws_security_group.alb.id]
  subnets                    = var.public_subnet_ids
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection
  idle_timeout               = 120

  access_logs {
    bucket  = aws_s3_bucket.access_logs.id
    prefix  = "alb"
    enabled = true
  }

  tags = local.tags

  depends_on = [aws_s3_bucket_policy.access_logs]
}

resource "aws_wafv2_web_acl_association" "main" {
  count = var.waf_web_acl_arn != null ? 1 : 0

  resource_arn = aws_lb.main.arn
  web_acl_arn  = var.waf_web_acl_arn
}

resource "aws_lb_target_group" "service" {
  #checkov:skip=CKV_AWS_378:TLS terminates at the load balancer; the hop to the tasks stays inside the VPC and the service security group admits only the load balancer. PloyD serves plain HTTP on 8080.
  name_prefix          = substr(replace(var.name, "-", ""), 0, 6)
  port                 = 8080
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = 30

  health_check {
    path                = "/healthz"
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = local.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.main.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = local.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.service.arn
  }

  tags = local.tags

  lifecycle {
    precondition {
      condition     = var.route53_zone_id != null || var.certificate_arn != null
      error_message = "Set route53_zone_id (the module creates and validates the certificate) or certificate_arn (an existing ACM certificate for domain_name)."
    }
  }
}

resource "aws_route53_record" "main" {
  count = var.route53_zone_id != null ? 1 : 0

  zone_id = var.route53_zone_id
  name    = var.domain_name
  type    = "A"

  alias {
    name                   = aws_lb.main.dns_name
    zone_id                = aws_lb.main.zone_id
    evaluate_target_health = true
  }
}
