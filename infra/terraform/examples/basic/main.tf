# The smallest complete PloyD deployment: copy this directory, fill terraform.tfvars
# (see terraform.tfvars.example), then `terraform init && terraform apply`.

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40.0, < 7.0.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.5.0, < 4.0.0"
    }
  }

  # The state holds the generated secrets and the GitHub App key: keep it in an
  # encrypted, access-controlled backend, for example:
  # backend "s3" {
  #   bucket       = "my-terraform-state"
  #   key          = "ployd/terraform.tfstate"
  #   region       = "eu-west-1"
  #   encrypt      = true
  #   use_lockfile = true
  # }
}

provider "aws" {
  region = var.region
}

variable "region" {
  description = "AWS region to deploy PloyD in."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must be an AWS region such as eu-west-1."
  }
}

variable "domain_name" {
  description = "PloyD's public DNS name, e.g. ci.example.com."
  type        = string
}

variable "route53_zone_id" {
  description = "Route 53 hosted zone of domain_name (the module creates the certificate and the record)."
  type        = string
}

variable "vpc_id" {
  description = "Existing VPC."
  type        = string
}

variable "public_subnet_ids" {
  description = "Public subnets for the load balancer (two or more AZs)."
  type        = list(string)
}

variable "private_subnet_ids" {
  description = "Private subnets with NAT for the service, the database and the runners (two or more AZs)."
  type        = list(string)
}

variable "image" {
  description = "PloyD image built from the repository's Dockerfile and pushed to ECR."
  type        = string
}

variable "cpu_ami_id" {
  description = "AMI of CPU runners (x86_64 Linux with git and Python 3.11)."
  type        = string
}

variable "gpu_ami_id" {
  description = "AMI of GPU runners (with NVIDIA drivers, e.g. an AWS Deep Learning Base AMI)."
  type        = string
}

variable "github_app_id" {
  description = "GitHub App id (ployd github-manifest registers the app)."
  type        = string
}

variable "github_private_key_file" {
  description = "Path of the GitHub App's private key (.pem)."
  type        = string
}

module "ployd" {
  source = "../.."

  name               = "ployd"
  domain_name        = var.domain_name
  route53_zone_id    = var.route53_zone_id
  vpc_id             = var.vpc_id
  public_subnet_ids  = var.public_subnet_ids
  private_subnet_ids = var.private_subnet_ids
  image              = var.image

  runner_classes = {
    cpu  = { ami_id = var.cpu_ami_id, volume_size_gb = 50 }
    l4   = { ami_id = var.gpu_ami_id, volume_size_gb = 200 }
    a100 = { ami_id = var.gpu_ami_id, volume_size_gb = 500 }
  }
  # The class whose template serves hardware classes not listed above (PloyD needs a
  # "default" launch template to start).
  default_runner_class = "cpu"

  github_app_id      = var.github_app_id
  github_private_key = file(var.github_private_key_file)

  tags = {
    project = "ployd"
  }
}

output "dashboard_url" {
  description = "PloyD's dashboard."
  value       = module.ployd.dashboard_url
}

output "github_webhook_url" {
  description = "Paste into the GitHub App: Webhook URL."
  value       = module.ployd.github_webhook_url
}

output "gitlab_webhook_url" {
  description = "Paste into GitLab: Settings > Webhooks > URL."
  value       = module.ployd.gitlab_webhook_url
}

output "github_webhook_secret" {
  description = "Paste into the GitHub App: Webhook secret (terraform output -raw github_webhook_secret)."
  value       = module.ployd.github_webhook_secret
  sensitive   = true
}

output "admin_token" {
  description = "PloyD API token (terraform output -raw admin_token)."
  value       = module.ployd.admin_token
  sensitive   = true
}
