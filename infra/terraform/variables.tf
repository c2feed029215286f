# Inputs of the PloyD module. Every variable has a type and a description; the ones
# that a typo would turn into a broken or unsafe deployment also have validation.

variable "name" {
  description = "Name of this PloyD deployment: prefixes every resource and is the value of the ployd:pool tag that the service puts on the runners it launches (and the only runners it may terminate)."
  type        = string
  default     = "ployd"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}[a-z0-9]$", var.name))
    error_message = "name must be 3-22 characters: lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "domain_name" {
  description = "Public DNS name of PloyD (e.g. ci.example.com). Webhook and dashboard URLs are https://DOMAIN/..."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.domain_name))
    error_message = "domain_name must be a lower-case DNS name such as ci.example.com (no scheme, no path)."
  }
}

variable "route53_zone_id" {
  description = "Route 53 public hosted zone that holds domain_name. When set, the module creates the ACM certificate (DNS-validated) and the alias record. Leave null and set certificate_arn to manage DNS yourself."
  type        = string
  default     = null

  validation {
    condition     = var.route53_zone_id == null || can(regex("^Z[A-Z0-9]{1,31}$", var.route53_zone_id))
    error_message = "route53_zone_id must look like Z0123456789ABCDEFGHIJ."
  }
}

variable "certificate_arn" {
  description = "ARN of an existing ACM certificate for domain_name, in this region. Required when route53_zone_id is null."
  type        = string
  default     = null

  validation {
    condition     = var.certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[0-9a-f-]+$", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN."
  }
}

variable "vpc_id" {
  description = "The existing VPC to deploy into."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123456789abcdef0."
  }
}

variable "public_subnet_ids" {
  description = "Public subnets (two or more availability zones) for the internet-facing load balancer."
  type        = list(string)

  validation {
    condition     = length(var.public_subnet_ids) >= 2 && alltrue([for s in var.public_subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "public_subnet_ids needs two or more subnet ids (subnet-...) in different availability zones."
  }
}

variable "private_subnet_ids" {
  description = "Private subnets (two or more availability zones, with a NAT gateway or VPC endpoints for outbound traffic) for the service tasks and the database."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2 && alltrue([for s in var.private_subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "private_subnet_ids needs two or more subnet ids (subnet-...) in different availability zones."
  }
}

variable "runner_subnet_ids" {
  description = "Subnets the runners are launched in. Defaults to private_subnet_ids (no public IP; outbound through NAT). Only list public subnets that auto-assign public IPs if you want runners reachable by address (the security group still lets nothing in)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for s in var.runner_subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "runner_subnet_ids must be subnet ids (subnet-...)."
  }
}

variable "alb_ingress_cidrs" {
  description = "CIDR blocks allowed to reach the HTTPS load balancer. GitHub.com and GitLab.com webhooks come from the internet, so the default is everyone; narrow it for a private forge."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.alb_ingress_cidrs) > 0 && alltrue([for c in var.alb_ingress_cidrs : can(cidrhost(c, 0))])
    error_message = "alb_ingress_cidrs must be one or more IPv4 CIDR blocks."
  }
}

variable "image" {
  description = "PloyD container image (built from the repository's Dockerfile), e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/ployd:0.1.0. Pin a tag or digest, not latest."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9._/-]+(:[A-Za-z0-9._-]+|@sha256:[0-9a-f]{64})$", var.image)) && !endswith(var.image, ":latest")
    error_message = "image must be a registry/repository reference with a tag or digest (and not :latest)."
  }
}

variable "desired_count" {
  description = "Number of PloyD service tasks. Two or more, spread over availability zones, so that a deploy or an AZ outage does not drop webhooks."
  type        = number
  default     = 2

  validation {
    condition     = var.desired_count >= 2 && var.desired_count <= 20 && floor(var.desired_count) == var.desired_count
    error_message = "desired_count must be a whole number from 2 to 20."
  }
}

variable "task_cpu" {
  description = "CPU units of one service task (Fargate sizes: 256, 512, 1024, 2048, 4096)."
  type        = number
  default     = 512

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096], var.task_cpu)
    error_message = "task_cpu must be one of 256, 512, 1024, 2048, 4096."
  }
}

variable "task_memory" {
  description = "Memory (MiB) of one service task; must be a valid Fargate pairing with task_cpu."
  type        = number
  default     = 1024

  validation {
    condition     = var.task_memory >= 512 && var.task_memory <= 30720 && var.task_memory % 512 == 0
    error_message = "task_memory must be a multiple of 512 MiB between 512 and 30720."
  }
}

variable "db_instance_class" {
  description = "RDS instance class of the PostgreSQL database."
  type        = string
  default     = "db.t4g.small"

  validation {
    condition     = can(regex("^db\\.[a-z0-9]+\\.[a-z0-9]+$", var.db_instance_class))
    error_message = "db_instance_class must look like db.t4g.small."
  }
}

variable "db_engine_version" {
  description = "PostgreSQL major version (RDS picks the latest minor and upgrades minors automatically)."
  type        = string
  default     = "16"

  validation {
    condition     = contains(["15", "16", "17"], var.db_engine_version)
    error_message = "db_engine_version must be 15, 16 or 17."
  }
}

variable "db_allocated_storage_gb" {
  description = "Initial database storage in GiB (gp3; storage autoscaling grows it up to 10x)."
  type        = number
  default     = 20

  validation {
    condition     = var.db_allocated_storage_gb >= 20 && var.db_allocated_storage_gb <= 6553
    error_message = "db_allocated_storage_gb must be between 20 and 6553."
  }
}

variable "db_multi_az" {
  description = "Run the database Multi-AZ (a standby in a second AZ). On by default for a production CI; false roughly halves the database's idle cost."
  type        = bool
  default     = true
}

variable "db_backup_retention_days" {
  description = "Days of automated database backups (point-in-time recovery)."
  type        = number
  default     = 7

  validation {
    condition     = var.db_backup_retention_days >= 1 && var.db_backup_retention_days <= 35
    error_message = "db_backup_retention_days must be between 1 and 35."
  }
}

variable "deletion_protection" {
  description = "Protect the database and the load balancer from deletion (set false, apply, then destroy, to tear a deployment down)."
  type        = bool
  default     = true
}

variable "log_retention_days" {
  description = "Retention of the CloudWatch log groups (service, database) in days."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention that CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653)."
  }
}

variable "artifact_expiration_days" {
  description = "Artifacts' default lifetime in days (PLOYD_ARTIFACT_EXPIRE_IN; a job's expire_in overrides it). The service deletes expired artifacts; the data bucket's lifecycle rule is a backstop."
  type        = number
  default     = 30

  validation {
    condition     = var.artifact_expiration_days >= 1 && var.artifact_expiration_days <= 3650
    error_message = "artifact_expiration_days must be between 1 and 3650."
  }
}

variable "cache_expiration_days" {
  description = "Days a cache entry may go unused before the service deletes it (PLOYD_CACHE_TTL)."
  type        = number
  default     = 14

  validation {
    condition     = var.cache_expiration_days >= 1 && var.cache_expiration_days <= 365
    error_message = "cache_expiration_days must be between 1 and 365."
  }
}

variable "log_expiration_days" {
  description = "Days after which job logs are deleted from the data bucket (its lifecycle rule, which expires any object after the largest of log_expiration_days, artifact_expiration_days and cache_expiration_days)."
  type        = number
  default     = 90

  validation {
    condition     = var.log_expiration_days >= 1 && var.log_expiration_days <= 3650
    error_message = "log_expiration_days must be between 1 and 3650."
  }
}

variable "runner_classes" {
  description = "Hardware classes of runners (keys as in PloyD's catalog: cpu, t4, l4, a10g, a100, h100, ...; \"default\" serves classes not listed), each with its AMI (an image with the PloyD agent's needs: git, Python 3.11; NVIDIA drivers for GPU classes) and root volume size in GiB. One launch template is created per class."
  type = map(object({
    ami_id         = string
    volume_size_gb = optional(number, 100)
  }))

  validation {
    condition     = length(var.runner_classes) > 0 && alltrue([for k, _ in var.runner_classes : can(regex("^[a-z0-9][a-z0-9-]{0,31}$", k))])
    error_message = "runner_classes needs at least one class, named with lower-case letters, digits and dashes (as in PloyD's catalog)."
  }

  validation {
    condition     = alltrue([for c in values(var.runner_classes) : can(regex("^ami-[0-9a-f]{8,17}$", c.ami_id))])
    error_message = "Every runner class needs ami_id = \"ami-...\"."
  }

  validation {
    condition     = alltrue([for c in values(var.runner_classes) : c.volume_size_gb >= 8 && c.volume_size_gb <= 16384])
    error_message = "volume_size_gb must be between 8 and 16384 GiB."
  }
}

variable "runner_egress_ports" {
  description = "TCP ports runners may connect out to (anywhere): HTTPS for git, registries, the PloyD service and AWS APIs; HTTP for OS package mirrors. Nothing may connect in."
  type        = list(number)
  default     = [80, 443]

  validation {
    condition     = length(var.runner_egress_ports) > 0 && alltrue([for p in var.runner_egress_ports : p >= 1 && p <= 65535 && floor(p) == p])
    error_message = "runner_egress_ports must be one or more TCP port numbers."
  }
}

variable "runner_ecr_repository_arns" {
  description = "ECR repositories whose images jobs run in (`image:`): the runners' instance role may log in to ECR and pull these. Empty: the runners' role may do nothing."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.runner_ecr_repository_arns : can(regex("^arn:aws[a-z-]*:ecr:[a-z0-9-]+:[0-9]{12}:repository/[a-z0-9._/-]+$", a))])
    error_message = "runner_ecr_repository_arns must be ECR repository ARNs (arn:aws:ecr:REGION:ACCOUNT:repository/NAME), no wildcards."
  }
}

variable "default_runner_class" {
  description = "The runner class whose launch template serves hardware classes not in runner_classes (PLOYD_EC2_LAUNCH_TEMPLATES' \"default\" key, which PloyD requires). Ignored when runner_classes has a \"default\" key itself."
  type        = string
  default     = "cpu"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,31}$", var.default_runner_class))
    error_message = "default_runner_class must be a class name as in runner_classes (lower-case letters, digits and dashes)."
  }
}

variable "secret_reference_prefix" {
  description = "Where the secrets that jobs name by reference live (aws-sm:NAME and aws-ssm:/PATH in `ployd secrets set --reference`): the service may read Secrets Manager secrets named PREFIX* and SSM parameters under /PREFIX*, nothing else. Default: \"<name>/jobs/\"."
  type        = string
  default     = null

  validation {
    condition     = var.secret_reference_prefix == null || can(regex("^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9_.-]+)*/$", var.secret_reference_prefix))
    error_message = "secret_reference_prefix must be a path such as ployd/jobs/ (letters, digits, _ . -, ending with a slash, no leading slash, no wildcard)."
  }
}

variable "github_app_id" {
  description = "GitHub App id (a number as a string); null to run without GitHub."
  type        = string
  default     = null

  validation {
    condition     = var.github_app_id == null || can(regex("^[0-9]+$", var.github_app_id))
    error_message = "github_app_id must be the app's number, e.g. \"123456\"."
  }
}

variable "github_private_key" {
  description = "The GitHub App's private key (PEM text, e.g. file(\"ployd.private-key.pem\")). Stored in Secrets Manager and injected into the task; it also lands in the Terraform state, so keep the state encrypted."
  type        = string
  default     = null
  sensitive   = true

  validation {
    condition     = var.github_private_key == null || can(regex("-----BEGIN [A-Z ]*PRIVATE KEY-----", var.github_private_key))
    error_message = "github_private_key must be a PEM private key."
  }
}

variable "gitlab_enabled" {
  description = "Connect PloyD to GitLab (needs gitlab_token). A plain boolean, because the token is sensitive and cannot decide which resources exist."
  type        = bool
  default     = false
}

variable "gitlab_url" {
  description = "GitLab instance URL (https://gitlab.com or your own)."
  type        = string
  default     = "https://gitlab.com"

  validation {
    condition     = can(regex("^https://[^/]+$", var.gitlab_url))
    error_message = "gitlab_url must be https://HOST without a path (and without /api/v4)."
  }
}

variable "gitlab_token" {
  description = "GitLab bot access token (api scope), used when gitlab_enabled. Stored in Secrets Manager and the Terraform state."
  type        = string
  default     = null
  sensitive   = true

  validation {
    condition     = var.gitlab_token == null || try(length(var.gitlab_token) >= 20, false)
    error_message = "gitlab_token looks too short for a GitLab access token."
  }
}

variable "tags" {
  description = "Tags added to every resource that takes tags."
  type        = map(string)
  default     = {}
}

variable "waf_web_acl_arn" {
  description = "Optional regional WAFv2 web ACL to associate with the load balancer. If it uses AWS's common rule set, set SizeRestrictions_BODY to count: webhook bodies exceed its 8 KB limit."
  type        = string
  default     = null

  validation {
    condition     = var.waf_web_acl_arn == null || can(regex("^arn:aws[a-z-]*:wafv2:[a-z0-9-]+:[0-9]{12}:regional/webacl/", var.waf_web_acl_arn))
    error_message = "waf_web_acl_arn must be a regional WAFv2 web ACL ARN."
  }
}
