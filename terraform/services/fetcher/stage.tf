# fetcher: four entry points of one artifact and role.
#  - main (SQS): LoadCompleted -> metric history + new data from Redshift -> S3 Parquet -> DatasetFetched
#  - aurora: invoked by the Aurora trigger (aws_lambda.invoke, 'Event') -> LoadCompleted on the bus
#  - sweeper: on a schedule, re-drives the Aurora outbox (edo_dms.dqad_outbox) rows not yet published
#  - freshness: on an EventBridge Scheduler schedule, reads the ETL log and reports late / missing /
#    arrived loads (LoadLogChecked -> notifier); state in freshness/<dataset>/state.json

locals {
  stage_name = "fetcher"
  redshift_cluster_arn = var.redshift.cluster_identifier == null ? null : (
    "arn:${local.partition}:redshift:${local.aws_region}:${local.account}:cluster:${var.redshift.cluster_identifier}"
  )
  redshift_dbuser_arns = var.redshift.cluster_identifier == null || var.redshift.db_user == null ? [] : [
    "arn:${local.partition}:redshift:${local.aws_region}:${local.account}:dbuser:${var.redshift.cluster_identifier}/${var.redshift.db_user}"
  ]
  redshift_dbname_arns = var.redshift.cluster_identifier == null || var.redshift.db_user == null ? [] : [
    for db in var.redshift.databases : "arn:${local.partition}:redshift:${local.aws_region}:${local.account}:dbname:${var.redshift.cluster_identifier}/${db}"
  ]
  redshift_targets = compact([local.redshift_cluster_arn, var.redshift.workgroup_arn])
  fetcher_secrets  = concat([var.outbox_dsn_secret_arn], var.redshift.secret_arns)
}

variable "redshift" {
  description = <<-EOT
    The Redshift the datasets' SQL runs on (through the Redshift Data API). Set cluster_identifier
    (provisioned; with db_user for IAM credentials) or workgroup_arn (serverless). secret_arns: the
    secrets the datasets name (Data API secret_arn, or the DSN of a direct SQL source).
  EOT
  type = object({
    cluster_identifier = optional(string)
    db_user            = optional(string)
    databases          = optional(list(string), [])
    workgroup_arn      = optional(string)
    secret_arns        = optional(list(string), [])
  })
  validation {
    condition     = (var.redshift.cluster_identifier == null) != (var.redshift.workgroup_arn == null)
    error_message = "Set exactly one of redshift.cluster_identifier and redshift.workgroup_arn."
  }
}

variable "redshift_unload_role_name" {
  description = "Name of the IAM role Redshift assumes for UNLOAD (the datasets' unload_iam_role); this root grants it write access to runs/*/unload/. null: its owner grants that (see terraform/README.md)."
  type        = string
  default     = null
}

variable "outbox_dsn_secret_arn" {
  description = "Secrets Manager secret holding the Aurora DSN the outbox sweeper connects with."
  type        = string
}

variable "freshness_schedule" {
  description = "Schedule of the freshness check (EventBridge Scheduler expression): how soon a late load is noticed."
  type        = string
  default     = "rate(15 minutes)"
}

variable "secrets_kms_key_arns" {
  description = "Customer-managed KMS keys of the secrets above, if not the AWS-managed secretsmanager key."
  type        = list(string)
  default     = []
}

variable "aurora_cluster_identifier" {
  description = "Aurora PostgreSQL cluster whose trigger (sql/) invokes the fetcher; it gets the RDS role allowing lambda:InvokeFunction."
  type        = string
}

variable "sweeper_schedule" {
  description = "Schedule of the outbox sweeper (EventBridge expression)."
  type        = string
  default     = "rate(5 minutes)"
}

data "aws_iam_policy_document" "stage" {
  statement {
    sid       = "RunArtifacts"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"]
    resources = ["${local.bucket_arn}/runs/*"]
  }
  statement {
    # A dataset with a `file` source reads it from sources/ of the dqad bucket (docs/fetcher.md).
    sid       = "ReadFileSources"
    actions   = ["s3:GetObject"]
    resources = ["${local.bucket_arn}/sources/*"]
  }
  statement {
    # The UNLOAD parts under runs/<dataset>/<run>/unload/ are deleted once read (and before a retry).
    sid       = "ClearUnloadParts"
    actions   = ["s3:DeleteObject"]
    resources = ["${local.bucket_arn}/runs/*/unload/*"]
  }
  statement {
    # dqad_fetcher.loadlog.FreshnessStore: the open late/missing incidents per dataset (conditional writes)
    sid       = "FreshnessState"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${local.bucket_arn}/freshness/*"]
  }
  statement {
    sid       = "RunDatasetSql"
    actions   = ["redshift-data:ExecuteStatement"]
    resources = local.redshift_targets
  }
  statement {
    # These Data API calls have no resource type; AWS scopes them to the caller's own statements.
    sid       = "ReadOwnStatements"
    actions   = ["redshift-data:DescribeStatement", "redshift-data:CancelStatement"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "redshift-data:statement-owner-iam-userid"
      values   = ["$${aws:userid}"]
    }
  }
  dynamic "statement" {
    for_each = length(local.redshift_dbuser_arns) > 0 ? [1] : []
    content {
      sid       = "RedshiftClusterCredentials"
      actions   = ["redshift:GetClusterCredentials"]
      resources = concat(local.redshift_dbuser_arns, local.redshift_dbname_arns)
    }
  }
  dynamic "statement" {
    # cluster_identifier without db_user: the Data API authenticates as the caller's IAM identity.
    for_each = var.redshift.cluster_identifier != null && var.redshift.db_user == null ? [1] : []
    content {
      sid       = "RedshiftClusterIamCredentials"
      actions   = ["redshift:GetClusterCredentialsWithIAM"]
      resources = [for db in(length(var.redshift.databases) > 0 ? var.redshift.databases : ["*"]) : "arn:${local.partition}:redshift:${local.aws_region}:${local.account}:dbname:${var.redshift.cluster_identifier}/${db}"]
    }
  }
  dynamic "statement" {
    for_each = var.redshift.workgroup_arn == null ? [] : [1]
    content {
      sid       = "RedshiftServerlessCredentials"
      actions   = ["redshift-serverless:GetCredentials"]
      resources = [var.redshift.workgroup_arn]
    }
  }
  statement {
    sid       = "ReadOwnSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = local.fetcher_secrets
  }
  dynamic "statement" {
    for_each = length(var.secrets_kms_key_arns) > 0 ? [1] : []
    content {
      sid       = "DecryptOwnSecrets"
      actions   = ["kms:Decrypt"]
      resources = var.secrets_kms_key_arns
    }
  }
}

module "service" {
  source = "../../modules/service"

  stage                = local.stage_name
  name_prefix          = var.name_prefix
  handler              = local.stage.handler
  rules                = local.stage.rules
  max_receive_count    = local.topology.max_receive_count
  visibility_timeout_s = local.topology.visibility_timeout_s

  bus_name        = local.shared.bus_name
  bus_arn         = local.shared.bus_arn
  bucket_name     = local.shared.bucket_name
  bucket_arn      = local.shared.bucket_arn
  kms_key_arn     = local.shared.kms_key_arn
  alarm_topic_arn = local.shared.operator_topic_arn

  artifact             = local.artifact
  memory_mb            = var.memory_mb
  timeout_s            = var.timeout_s
  maximum_concurrency  = var.maximum_concurrency
  reserved_concurrency = var.reserved_concurrency
  batch_size           = var.batch_size
  subnet_ids           = var.subnet_ids
  security_group_ids   = var.security_group_ids
  log_level            = var.log_level
  log_retention_days   = var.log_retention_days

  extra_functions = {
    aurora = {
      handler       = local.stage.extra_handlers.aurora
      timeout_s     = 60
      memory_mb     = 512
      async_retries = 2
    }
    sweeper = {
      handler       = local.stage.extra_handlers.sweeper
      timeout_s     = 300
      memory_mb     = 512
      async_retries = 0 # the next scheduled run retries
      environment = {
        DQAD_OUTBOX_DSN_SECRET_ARN = var.outbox_dsn_secret_arn
      }
    }
    freshness = {
      handler       = local.stage.extra_handlers.freshness
      timeout_s     = 300
      memory_mb     = 512
      async_retries = 0 # a failed check goes to the DLQ (on_failure, with the error); the next one runs in minutes
      environment = {
        # the ETL log is read on the database (and with the secret) of the outbox
        DQAD_OUTBOX_DSN_SECRET_ARN = var.outbox_dsn_secret_arn
      }
    }
  }
  extra_dlq_sources = [aws_cloudwatch_event_rule.sweeper.arn]

  policy_json = data.aws_iam_policy_document.stage.json
  tags        = local.tags
}

# --- Redshift UNLOADs the window into the run's unload/ prefix ---------------------------------------
data "aws_iam_policy_document" "unload" {
  statement {
    sid       = "UnloadIntoRuns"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload"]
    resources = ["${local.bucket_arn}/runs/*/unload/*"]
  }
  statement {
    sid       = "ListRunPrefixes"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["runs/*"]
    }
  }
  statement {
    sid       = "EncryptUnloadParts"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [local.shared.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "unload" {
  count  = var.redshift_unload_role_name == null ? 0 : 1
  name   = "${var.name_prefix}-unload"
  role   = var.redshift_unload_role_name
  policy = data.aws_iam_policy_document.unload.json
}

# --- the outbox sweeper's schedule -------------------------------------------------------------------
resource "aws_cloudwatch_event_rule" "sweeper" {
  name                = "${var.name_prefix}-fetcher-sweeper"
  description         = "dqad: re-drive Aurora outbox rows whose Lambda invocation was lost"
  schedule_expression = var.sweeper_schedule
  tags                = local.tags
}

resource "aws_cloudwatch_event_target" "sweeper" {
  rule      = aws_cloudwatch_event_rule.sweeper.name
  target_id = "sweeper"
  arn       = module.service.extra_function_arns["sweeper"]
  retry_policy {
    maximum_event_age_in_seconds = 600
    maximum_retry_attempts       = 2
  }
  dead_letter_config {
    arn = module.service.dlq_arn
  }
}

resource "aws_lambda_permission" "sweeper_schedule" {
  statement_id  = "AllowSweeperSchedule"
  action        = "lambda:InvokeFunction"
  function_name = module.service.extra_function_names["sweeper"]
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.sweeper.arn
}

# --- the freshness check's schedule (EventBridge Scheduler, with its own role) ------------------------
data "aws_iam_policy_document" "scheduler_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_iam_role" "freshness_schedule" {
  name               = "${var.name_prefix}-fetcher-freshness-schedule"
  assume_role_policy = data.aws_iam_policy_document.scheduler_trust.json
  tags               = local.tags
}

data "aws_iam_policy_document" "freshness_schedule" {
  statement {
    sid       = "InvokeFreshnessCheck"
    actions   = ["lambda:InvokeFunction"]
    resources = [module.service.extra_function_arns["freshness"]]
  }
  statement {
    # An invocation Scheduler could not deliver (after retry_policy) goes to the fetcher's DLQ; a check
    # that ran and failed goes there through the function's own on_failure destination.
    sid       = "DeadLetterFailedChecks"
    actions   = ["sqs:SendMessage"]
    resources = [module.service.dlq_arn]
  }
  statement {
    # the schedule (kms_key_arn) and the DLQ are encrypted with the deployment key
    sid       = "UseDeploymentKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [local.shared.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "freshness_schedule" {
  name   = "invoke-dqad-freshness-check"
  role   = aws_iam_role.freshness_schedule.id
  policy = data.aws_iam_policy_document.freshness_schedule.json
}

resource "aws_scheduler_schedule" "freshness" {
  name                = "${var.name_prefix}-fetcher-freshness"
  description         = "dqad: report late, missing and arrived loads of the watched tables from the ETL log"
  schedule_expression = var.freshness_schedule
  kms_key_arn         = local.shared.kms_key_arn
  flexible_time_window {
    mode = "OFF"
  }
  target {
    arn      = module.service.extra_function_arns["freshness"]
    role_arn = aws_iam_role.freshness_schedule.arn
    # the scheduled time, not the time of delivery: a retried invocation judges the same instant
    input = jsonencode({ checked_at = "<aws.scheduler.scheduled-time>" })
    retry_policy {
      maximum_event_age_in_seconds = 600
      maximum_retry_attempts       = 2
    }
    dead_letter_config {
      arn = module.service.dlq_arn
    }
  }
}

# --- Aurora invokes the aurora entry point -----------------------------------------------------------
data "aws_iam_policy_document" "aurora_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["rds.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_iam_role" "aurora_invoke" {
  name               = "${var.name_prefix}-fetcher-aurora-invoke"
  assume_role_policy = data.aws_iam_policy_document.aurora_trust.json
  tags               = local.tags
}

data "aws_iam_policy_document" "aurora_invoke" {
  statement {
    sid       = "InvokeFetcherAuroraEntry"
    actions   = ["lambda:InvokeFunction"]
    resources = [module.service.extra_function_arns["aurora"]]
  }
}

resource "aws_iam_role_policy" "aurora_invoke" {
  name   = "invoke-dqad-fetcher"
  role   = aws_iam_role.aurora_invoke.id
  policy = data.aws_iam_policy_document.aurora_invoke.json
}

resource "aws_rds_cluster_role_association" "aurora_invoke" {
  db_cluster_identifier = var.aurora_cluster_identifier
  feature_name          = "Lambda"
  role_arn              = aws_iam_role.aurora_invoke.arn
}

# Resource-based side of the same grant: only that role may invoke the aurora entry point.
resource "aws_lambda_permission" "aurora" {
  statement_id  = "AllowAuroraTrigger"
  action        = "lambda:InvokeFunction"
  function_name = module.service.extra_function_names["aurora"]
  principal     = aws_iam_role.aurora_invoke.arn
}
