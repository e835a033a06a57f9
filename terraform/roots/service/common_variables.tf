# Identical in every terraform/services/<stage>/ root (tests/terraform checks it); edit all or none.
# envs/<env>/common.tfvars sets the first block for every root of an environment.

variable "region" {
  description = "AWS region of the deployment."
  type        = string
}

variable "name_prefix" {
  description = "Prefix every resource name derives from (dqad.topology.Names); must equal the shared stack's."
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
  description = "Where the shared stack's (terraform/envs/<env>) state lives: this root reads its outputs."
  type = object({
    bucket = string
    key    = string
    region = string
  })
}

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
