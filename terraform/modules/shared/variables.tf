variable "name_prefix" {
  description = "Prefix every resource name derives from (dqad.topology.Names), e.g. acme-data-AnomalyDetection-prod."
  type        = string
  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9-]{1,38}[A-Za-z0-9]$", var.name_prefix))
    error_message = "name_prefix: 3-40 letters, digits or hyphens (leaves room for suffixes within AWS name limits)."
  }
}

variable "bucket_name" {
  description = "Name of the dqad data bucket (globally unique, lowercase). No default: it names a resource."
  type        = string
}

variable "kms_key_arn" {
  description = "ARN of an existing customer-managed KMS key to use; null creates one (the old manual step). An existing key's policy must grant what aws_kms_key.this grants (see terraform/README.md)."
  type        = string
  default     = null
}

variable "archive_retention_days" {
  description = "How long the bus archive keeps events for replay (0 = forever)."
  type        = number
  default     = 90
}

variable "runs_expiration_days" {
  description = "Objects under runs/ (per-run Parquet and reports) expire after this many days."
  type        = number
  default     = 400
}

variable "alert_emails" {
  description = "Business users subscribed to the alerts topic by email (each must confirm the subscription mail)."
  type        = list(string)
  default     = []
}

variable "operator_emails" {
  description = "Operators subscribed to the operator topic (stage failures, DLQ and error alarms)."
  type        = list(string)
  default     = []
}

variable "image_services" {
  description = "Stages deployed as container images; each gets an ECR repository. The trainer's repository also serves the SageMaker job image."
  type        = set(string)
  validation {
    condition     = alltrue([for s in var.image_services : contains(["fetcher", "labeler", "trainer", "scorer", "notifier"], s)])
    error_message = "image_services must name dqad stages."
  }
}

variable "access_logs_bucket" {
  description = "Existing bucket receiving S3 server access logs for the data bucket; null disables access logging."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags applied explicitly to every resource (the provider's default_tags normally carry them too)."
  type        = map(string)
}
