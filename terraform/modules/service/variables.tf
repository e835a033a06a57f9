variable "stage" {
  description = "dqad stage this instance deploys (a key of dqad.topology.STAGES_BY_NAME)."
  type        = string
  validation {
    condition     = contains(["fetcher", "labeler", "trainer", "scorer", "notifier"], var.stage)
    error_message = "stage must be one of fetcher, labeler, trainer, scorer, notifier."
  }
}

variable "name_prefix" {
  description = "Prefix of every name (dqad.topology.Names): queue <prefix>-<stage>, DLQ <prefix>-<stage>-dlq, ..."
  type        = string
}

variable "handler" {
  description = "Lambda handler of the SQS-fed entry point, module.function (from terraform/topology.json)."
  type        = string
}

variable "rules" {
  description = "EventBridge rules targeting this stage's queue, from terraform/topology.json (pattern is a JSON string)."
  type = list(object({
    suffix         = string
    pattern        = string
    on_default_bus = bool
  }))
  validation {
    condition     = length(var.rules) > 0
    error_message = "A stage consumes at least one event type."
  }
}

variable "max_receive_count" {
  description = "Deliveries before SQS moves a message to the DLQ (dqad.topology.MAX_RECEIVE_COUNT)."
  type        = number
}

variable "visibility_timeout_s" {
  description = "Queue visibility timeout (dqad.topology.VISIBILITY_TIMEOUT_S); must be >= every function timeout."
  type        = number
}

variable "bus_name" {
  description = "The dqad EventBridge bus."
  type        = string
}

variable "bus_arn" {
  description = "ARN of the dqad bus (the stage puts its events there)."
  type        = string
}

variable "bucket_name" {
  description = "The dqad data bucket."
  type        = string
}

variable "bucket_arn" {
  description = "ARN of the dqad data bucket."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key of the deployment: queues, logs, environment variables, and the bucket/topics the stage uses."
  type        = string
}

variable "alarm_topic_arn" {
  description = "SNS topic receiving this stage's alarms (the operator topic)."
  type        = string
}

variable "artifact" {
  description = "Exactly one of: a zip in S3 (s3_bucket, s3_key, sha256 = base64 SHA-256 of the zip) or an ECR image_uri."
  type = object({
    s3_bucket = optional(string)
    s3_key    = optional(string)
    sha256    = optional(string)
    image_uri = optional(string)
  })
  validation {
    condition     = (var.artifact.image_uri == null) != (var.artifact.s3_key == null)
    error_message = "Set either artifact.image_uri or artifact.s3_bucket/s3_key, not both."
  }
}

variable "runtime" {
  description = "Python runtime of zip functions (images carry their own)."
  type        = string
  default     = "python3.12"
}

variable "memory_mb" {
  description = "Memory of the SQS-fed function."
  type        = number
  default     = 1024
}

variable "timeout_s" {
  description = "Timeout of the SQS-fed function."
  type        = number
  default     = 300
}

variable "batch_size" {
  description = "SQS records per invocation."
  type        = number
  default     = 5
}

variable "batching_window_s" {
  description = "How long the event source mapping gathers records before invoking."
  type        = number
  default     = 0
}

variable "maximum_concurrency" {
  description = "Concurrent invocations the SQS event source may drive (2-1000); protects Redshift and downstream APIs."
  type        = number
  default     = 5
  validation {
    condition     = var.maximum_concurrency >= 2 && var.maximum_concurrency <= 1000
    error_message = "maximum_concurrency must be between 2 and 1000 (AWS limits)."
  }
}

variable "reserved_concurrency" {
  description = "Reserved concurrency of each function: caps spend and isolates the stage (must be >= maximum_concurrency)."
  type        = number
  default     = 10
}

variable "environment" {
  description = "Extra environment of the SQS-fed function (merged over the base DQAD_* settings)."
  type        = map(string)
  default     = {}
}

variable "extra_functions" {
  description = "Further entry points of the same artifact and role (fetcher aurora/sweeper, notifier feedback)."
  type = map(object({
    handler           = string
    timeout_s         = optional(number, 60)
    memory_mb         = optional(number, 512)
    environment       = optional(map(string), {})
    function_url_auth = optional(string) # null = no function URL
    async_retries     = optional(number, 2)
    # A policy document JSON: the entry point gets its own role with only this (plus its own log
    # stream), instead of the stage's role. For code reachable by anyone (a public function URL).
    policy_json = optional(string)
  }))
  default = {}
}

variable "policy_json" {
  description = "The stage's own IAM statements (what its code calls), as a policy document JSON."
  type        = string
}

variable "extra_dlq_sources" {
  description = "ARNs of further EventBridge rules (e.g. the sweeper schedule) allowed to dead-letter into this stage's DLQ."
  type        = list(string)
  default     = []
}

variable "subnet_ids" {
  description = "Private subnets for the functions (empty = no VPC). Needed where a stage reaches a database in a VPC."
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
  description = "Retention of the functions' CloudWatch log groups."
  type        = number
  default     = 365
}

variable "queue_age_alarm_s" {
  description = "Alarm when the oldest message of the queue is older than this."
  type        = number
  default     = 3600
}

variable "tags" {
  description = "Tags applied explicitly to every resource."
  type        = map(string)
}

variable "reads_catalog" {
  description = "Whether the stage reads the dataset catalog (config/*); every stage does (the scorer for its incident rules)."
  type        = bool
  default     = true
}
