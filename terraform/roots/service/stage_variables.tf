# Identical in every terraform/services/<stage>/ root (tests/terraform checks it); edit all or none.
# The variables every root shares (envs/<env>/common.tfvars) are in roots/deployment_variables.tf.

# --- per stage (envs/<env>/<stage>.tfvars) ------------------------------------------------------------

variable "zip_path" {
  description = "dist/<stage>/<stage>.zip built by `make package SERVICE=<stage>`; null when image_uri is set."
  type        = string
  default     = null
}

variable "image_uri" {
  description = "ECR image (immutable tag or digest) of the stage when it is deployed as a container image; null for zip."
  type        = string
  default     = null
}

variable "memory_mb" {
  description = "Memory of the SQS-fed function."
  type        = number
}

variable "timeout_s" {
  description = "Timeout of the SQS-fed function (<= dqad.topology.VISIBILITY_TIMEOUT_S)."
  type        = number
}

variable "maximum_concurrency" {
  description = "Maximum concurrency of the SQS event source."
  type        = number
  default     = 5
}

variable "reserved_concurrency" {
  description = "Reserved concurrency of each function of the stage."
  type        = number
  default     = 10
}

variable "batch_size" {
  description = "SQS records per invocation."
  type        = number
  default     = 5
}

variable "subnet_ids" {
  description = "Private subnets for the stage's functions (empty = not in a VPC)."
  type        = list(string)
  default     = []
}

variable "security_group_ids" {
  description = "Security groups of the functions when subnet_ids is set."
  type        = list(string)
  default     = []
}

variable "log_level" {
  description = "LOG_LEVEL of the functions."
  type        = string
  default     = "INFO"
}

variable "log_retention_days" {
  description = "Retention of the functions' log groups."
  type        = number
  default     = 365
}
