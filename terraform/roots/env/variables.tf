# Identical in every terraform/envs/<env>/ root (tests/terraform checks it); only *.tfvars differ.
# common.tfvars (shared by this root and every terraform/services/<stage> root of the environment)

variable "region" {
  description = "AWS region of the deployment."
  type        = string
}

variable "name_prefix" {
  description = "Prefix every resource name derives from (dqad.topology.Names), e.g. acme-data-AnomalyDetection-prod."
  type        = string
}

variable "access_department" {
  description = "Tag access-department."
  type        = string
}

variable "access_team" {
  description = "Tag access-team."
  type        = string
}

variable "bill_tag_id" {
  description = "Tag BillTagId."
  type        = string
}

variable "access_org" {
  description = "Tag access-org."
  type        = string
}

variable "tag_id" {
  description = "Tag TagID."
  type        = string
}

variable "extra_tags" {
  description = "Further tags for every resource."
  type        = map(string)
  default     = {}
}

variable "shared_state" {
  description = "Where this root's own state lives (the service roots read it from there); checked against the backend key by terraform/deploy.sh."
  type = object({
    bucket = string
    key    = string
    region = string
  })
}

# shared.tfvars

variable "bucket_name" {
  description = "The dqad data bucket (globally unique, lowercase)."
  type        = string
}

variable "kms_key_arn" {
  description = "Existing KMS key to use; null creates one."
  type        = string
  default     = null
}

variable "alert_emails" {
  description = "Business users subscribed to anomaly digests (each confirms a subscription email)."
  type        = list(string)
}

variable "operator_emails" {
  description = "Operators subscribed to stage failures and alarms."
  type        = list(string)
}

variable "image_services" {
  description = "Stages deployed as container images (get an ECR repository)."
  type        = set(string)
}

variable "archive_retention_days" {
  description = "Retention of the bus archive (replay window)."
  type        = number
  default     = 90
}

variable "runs_expiration_days" {
  description = "Expiry of runs/ objects."
  type        = number
  default     = 400
}

variable "access_logs_bucket" {
  description = "Bucket receiving the data bucket's access logs; null disables."
  type        = string
  default     = null
}

variable "datasets_config_path" {
  description = "Local datasets.toml uploaded to s3://<bucket>/config/datasets.toml; null leaves the object alone (managed elsewhere)."
  type        = string
  default     = null
}

variable "vpc_endpoints" {
  description = "Create VPC endpoints for Lambdas in private subnets without NAT; null creates none."
  type = object({
    vpc_id             = string
    subnet_ids         = list(string)
    route_table_ids    = list(string)
    client_cidr_blocks = list(string)
    interface_services = optional(set(string))
  })
  default = null
}
