# The PloyD service on ECS Fargate: two or more tasks in private subnets behind the load
# balancer, settings in `environment`, every secret through ECS `secrets`.

resource "aws_ecs_cluster" "main" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  tags = local.tags

  depends_on = [aws_cloudwatch_log_group.container_insights]
}

resource "aws_ecs_cluster_capacity_providers" "main" {
  cluster_name       = aws_ecs_cluster.main.name
  capacity_providers = ["FARGATE"]

  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
  }
}

locals {
  container_name = "ployd"

  # PLOYD_EC2_LAUNCH_TEMPLATES needs a "default" key (the class a job gets when its own
  # class has no template): runner_classes' own "default", else default_runner_class's.
  default_runner_class = contains(keys(var.runner_classes), "default") ? "default" : var.default_runner_class
  launch_templates = merge(
    { for k, lt in aws_launch_template.runner : k => lt.id },
    { default = aws_launch_template.runner[local.default_runner_class].id },
  )

  # Only variables the app reads (tests/infra/test_terraform_env.py feeds them to
  # Settings.from_env and the EC2 configuration).
  environment = merge(
    {
      PLOYD_HOST                 = "0.0.0.0"
      PLOYD_PORT                 = "8080"
      PLOYD_PUBLIC_URL           = local.public_url
      PLOYD_DATA_DIR             = "/var/lib/ployd"
      PLOYD_EXECUTOR             = "ec2"
      PLOYD_DEPLOYMENT           = var.name
      PLOYD_AWS_REGION           = local.region
      PLOYD_S3_BUCKET            = module.logs_bucket.id
      PLOYD_ARTIFACT_EXPIRE_IN   = "${var.artifact_expiration_days}d"
      PLOYD_CACHE_TTL            = "${var.cache_expiration_days}d"
      PLOYD_EC2_SUBNETS          = join(",", local.runner_subnet_ids)
      PLOYD_EC2_SECURITY_GROUP   = aws_security_group.runners.id
      PLOYD_EC2_INSTANCE_PROFILE = aws_iam_instance_profile.runner.arn
      PLOYD_EC2_LAUNCH_TEMPLATES = jsonencode(local.launch_templates)
      AWS_REGION                 = local.region
      AWS_DEFAULT_REGION         = local.region
      PYTHONUNBUFFERED           = "1"
      PLOYD_LOG_LEVEL            = "INFO"
      PLOYD_HEARTBEAT_TIMEOUT    = "60"
    },
    local.github_enabled ? { PLOYD_GITHUB_APP_ID = var.github_app_id } : {},
    local.gitlab_enabled ? { PLOYD_GITLAB_URL = var.gitlab_url } : {},
  )

  container_definitions = [
    {
      name      = local.container_name
      image     = var.image
      essential = true

      portMappings = [
        { containerPort = 8080, protocol = "tcp" },
      ]

      environment = [for k in sort(keys(local.environment)) : { name = k, value = local.environment[k] }]

      # Injected by ECS from Secrets Manager at start: never in the task definition.
      secrets = [for k in sort(tolist(local.secret_names)) : { name = k, valueFrom = aws_secretsmanager_secret.env[k].arn }]

      readonlyRootFilesystem = true
      privileged             = false
      user                   = "10001:10001"

      mountPoints = [
        { sourceVolume = "data", containerPath = "/var/lib/ployd", readOnly = false },
        { sourceVolume = "tmp", containerPath = "/tmp", readOnly = false },
      ]

      linuxParameters = {
        initProcessEnabled = true
        capabilities       = { drop = ["ALL"] }
      }

      healthCheck = {
        command     = ["CMD", "python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
        interval    = 30
        timeout     = 5
        retries     = 3
        startPeriod = 60
      }

      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.service.name
          awslogs-region        = local.region
          awslogs-stream-prefix = "ployd"
        }
      }
    },
  ]
}

resource "aws_ecs_task_definition" "service" {
  family                   = var.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(var.task_cpu)
  memory                   = tostring(var.task_memory)
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  container_definitions    = jsonencode(local.container_definitions)

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  # Task-local scratch space (Fargate ephemeral storage): the root filesystem is read-only.
  volume {
    name = "data"
  }

  volume {
    name = "tmp"
  }

  tags = local.tags

  lifecycle {
    precondition {
      condition     = (var.github_app_id == null) == (var.github_private_key == null)
      error_message = "github_app_id and github_private_key go together: set both to enable GitHub, or neither."
    }

    precondition {
      condition     = !var.gitlab_enabled || var.gitlab_token != null
      error_message = "gitlab_enabled needs gitlab_token."
    }

    # Without a "default" launch template `ployd serve` refuses to start.
    precondition {
      condition     = contains(keys(var.runner_classes), local.default_runner_class)
      error_message = "runner_classes needs a \"default\" class, or default_runner_class must name one of its classes (PLOYD_EC2_LAUNCH_TEMPLATES needs a default)."
    }
  }
}

resource "aws_ecs_service" "main" {
  name                               = var.name
  cluster                            = aws_ecs_cluster.main.id
  task_definition                    = aws_ecs_task_definition.service.arn
  desired_count                      = var.desired_count
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  health_check_grace_period_seconds  = 90
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  enable_execute_command             = false
  propagate_tags                     = "SERVICE"
  # apply waits until the tasks run and pass their health checks: a service that cannot
  # start fails the apply (and the circuit breaker rolls back) instead of reporting success.
  wait_for_steady_state = true

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.service.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.service.arn
    container_name   = local.container_name
    container_port   = 8080
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  tags = local.tags

  timeouts {
    create = "20m"
    update = "20m"
  }

  depends_on = [aws_lb_listener.https, aws_iam_role_policy.execution, aws_iam_role_policy.task]
}
