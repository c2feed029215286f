# Security groups. Each allows only the flows PloyD needs:
#   internet --443--> ALB --8080--> service tasks --5432--> database
#   service tasks --443--> forges, AWS APIs (through NAT or VPC endpoints)
#   runners --80/443--> anywhere; nothing --> runners

resource "aws_security_group" "alb" {
  name_prefix = "${var.name}-alb-"
  description = "PloyD ${var.name} load balancer: HTTPS in, to the service tasks out"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-alb" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  for_each = toset(var.alb_ingress_cidrs)

  security_group_id = aws_security_group.alb.id
  description       = "HTTPS from ${each.key}: webhooks, API, dashboard"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.key
}

resource "aws_vpc_security_group_egress_rule" "alb_to_service" {
  security_group_id            = aws_security_group.alb.id
  description                  = "To the PloyD tasks"
  ip_protocol                  = "tcp"
  from_port                    = 8080
  to_port                      = 8080
  referenced_security_group_id = aws_security_group.service.id
}

resource "aws_security_group" "service" {
  name_prefix = "${var.name}-service-"
  description = "PloyD ${var.name} service tasks: from the load balancer in; HTTPS and the database out"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-service" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "service_from_alb" {
  security_group_id            = aws_security_group.service.id
  description                  = "From the load balancer"
  ip_protocol                  = "tcp"
  from_port                    = 8080
  to_port                      = 8080
  referenced_security_group_id = aws_security_group.alb.id
}

resource "aws_vpc_security_group_egress_rule" "service_https" {
  security_group_id = aws_security_group.service.id
  description       = "HTTPS to GitHub, GitLab, AWS APIs, ECR"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "service_to_db" {
  security_group_id            = aws_security_group.service.id
  description                  = "To PostgreSQL"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.db.id
}

resource "aws_security_group" "db" {
  name_prefix = "${var.name}-db-"
  description = "PloyD ${var.name} database: PostgreSQL from the service tasks only; no egress"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-db" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "db_from_service" {
  security_group_id            = aws_security_group.db.id
  description                  = "PostgreSQL from the PloyD tasks"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.service.id
}

resource "aws_security_group" "runners" {
  name_prefix = "${var.name}-runners-"
  description = "PloyD ${var.name} runners: outbound only, nothing may connect in"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-runners" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_egress_rule" "runners" {
  for_each = toset([for p in var.runner_egress_ports : tostring(p)])

  security_group_id = aws_security_group.runners.id
  description       = "Runners out on TCP ${each.key}"
  ip_protocol       = "tcp"
  from_port         = tonumber(each.key)
  to_port           = tonumber(each.key)
  cidr_ipv4         = "0.0.0.0/0"
}
