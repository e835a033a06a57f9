# notifier: AnomaliesScored / StageFailed -> SNS email digest (+ HTML report) -> NotificationSent.
# Also serves the signed feedback links of the emails (function URL, HMAC-verified in the handler).

locals {
  stage_name = "notifier"
}

# The HMAC key of the feedback links. Generated here so no one has to create it by hand; it lives
# in the (encrypted) state and in Secrets Manager, and is read by the notifier only.
resource "random_password" "feedback" {
  length  = 64
  special = false
}

resource "aws_secretsmanager_secret" "feedback" {
  #checkov:skip=CKV2_AWS_57:Rotating the HMAC key invalidates every feedback link already emailed; rotate deliberately with `terraform apply -replace=random_password.feedback`.
  name        = "${var.name_prefix}-notifier-feedback-hmac"
  description = "dqad: HMAC key signing the notifier's feedback links"
  kms_key_id  = local.shared.kms_key_arn
  tags        = local.tags
}

resource "aws_secretsmanager_secret_version" "feedback" {
  secret_id     = aws_secretsmanager_secret.feedback.id
  secret_string = random_password.feedback.result
}

data "aws_iam_policy_document" "stage" {
  statement {
    # Read-only: the scores it mails and the report it links (a presigned GET); it writes no run output.
    sid       = "ReadRunArtifacts"
    actions   = ["s3:GetObject"]
    resources = ["${local.bucket_arn}/runs/*"]
  }
  statement {
    # dqad_notifier.state: alerts/<dataset>/state.json (repeat suppression, conditional writes)
    sid       = "AlertState"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${local.bucket_arn}/alerts/*"]
  }
  statement {
    sid       = "PublishDigestsAndOperatorAlerts"
    actions   = ["sns:Publish"]
    resources = [local.shared.alerts_topic_arn, local.shared.operator_topic_arn]
  }
  statement {
    sid       = "IdempotencyRecords"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]
    resources = [local.shared.idempotency_table_arn]
  }
  statement {
    sid       = "FeedbackKey"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.feedback.arn]
  }
  # dqad_notifier.channels: the webhook URL (and signing key) of each Slack / Teams / webhook channel
  # the datasets configure is read when the alert is sent (docs/alerts.md, "Channels").
  dynamic "statement" {
    for_each = length(var.channel_secret_arns) > 0 ? [1] : []
    content {
      sid       = "ChannelSecrets"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = var.channel_secret_arns
    }
  }
  dynamic "statement" {
    for_each = length(var.channel_secrets_kms_key_arns) > 0 ? [1] : []
    content {
      sid       = "DecryptChannelSecrets"
      actions   = ["kms:Decrypt"]
      resources = var.channel_secrets_kms_key_arns
    }
  }
}

variable "channel_secret_arns" {
  description = "Secrets Manager secrets the datasets' channels name (Slack / Teams webhook URL; a signed webhook's {url, signing_key}); the notifier may read only these. [] when no dataset has channels."
  type        = list(string)
}

variable "channel_secrets_kms_key_arns" {
  description = "Customer-managed KMS keys of the channel secrets; [] for the AWS-managed secretsmanager key."
  type        = list(string)
}

data "aws_iam_policy_document" "feedback" {
  statement {
    sid       = "FeedbackKey"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.feedback.arn]
  }
  statement {
    sid       = "WriteFeedbackLabels"
    actions   = ["s3:PutObject"]
    resources = ["${local.bucket_arn}/labels/*"]
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

  environment = {
    DQAD_ALERTS_TOPIC_ARN    = local.shared.alerts_topic_arn
    DQAD_OPERATOR_TOPIC_ARN  = local.shared.operator_topic_arn
    DQAD_IDEMPOTENCY_TABLE   = local.shared.idempotency_table_name
    DQAD_FEEDBACK_SECRET_ARN = aws_secretsmanager_secret.feedback.arn
    # DQAD_FEEDBACK_URL is set by the module from the feedback function's URL (DQAD_<ENTRY>_URL).
  }

  extra_functions = {
    feedback = {
      handler           = local.stage.extra_handlers.feedback
      timeout_s         = 30
      memory_mb         = 512
      function_url_auth = "NONE"
      async_retries     = 0
      # The page verifies links with the secret alone (it never builds one, so it needs no
      # DQAD_FEEDBACK_URL, which would be a reference cycle on its own URL).
      environment = {
        DQAD_FEEDBACK_SECRET_ARN = aws_secretsmanager_secret.feedback.arn
      }
      # Public URL: its own role, able only to read the key and record a label.
      policy_json = data.aws_iam_policy_document.feedback.json
    }
  }

  policy_json = data.aws_iam_policy_document.stage.json
  tags        = local.tags
}
