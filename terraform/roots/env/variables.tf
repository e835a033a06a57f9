# Identical in every terraform/envs/<env>/ root (tests/terraform checks it); only *.tfvars differ.
# The variables every root shares (common.tfvars) are in roots/deployment_variables.tf.

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
