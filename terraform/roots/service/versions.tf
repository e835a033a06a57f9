# Identical in every terraform/services/<stage>/ root (tests/terraform checks it); edit all or none.
terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.60"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.6"
    }
  }
  # Partial configuration: terraform/deploy.sh passes envs/<env>/backend.hcl and key=<env>/<stage>.tfstate.
  backend "s3" {}
}

provider "aws" {
  region = var.region
  default_tags {
    tags = local.tags
  }
}
