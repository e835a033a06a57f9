# Identical in every terraform/envs/<env>/ root (tests/terraform checks it); only *.tfvars differ.
terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.60"
    }
  }
  # Partial configuration: terraform/deploy.sh passes backend.hcl and key=<env>/shared.tfstate.
  backend "s3" {}
}

provider "aws" {
  region = var.region
  default_tags {
    tags = local.tags
  }
}
