# One dqad stage, deployable on its own: queue + DLQ, the EventBridge rule(s) feeding the queue,
# the Lambda function(s) with their own role, the SQS event source and the alarms.
# Names follow dqad.topology.Names; tests/terraform checks them and the rules against the topology.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account   = data.aws_caller_identity.current.account_id
  region    = data.aws_region.current.name
  partition = data.aws_partition.current.partition

  queue_name    = "${var.name_prefix}-${var.stage}"
  dlq_name      = "${var.name_prefix}-${var.stage}-dlq"
  function_name = "${var.name_prefix}-${var.stage}"
  role_name     = "${var.name_prefix}-${var.stage}"

  # Key "main" for the rule without suffix: for_each keys cannot be empty.
  rules = { for r in var.rules : (r.suffix == "" ? "main" : trimprefix(r.suffix, "-")) => r }

  extra_function_names = { for k, f in var.extra_functions : k => "${var.name_prefix}-${var.stage}-${k}" }
  all_function_names   = merge({ main = local.function_name }, local.extra_function_names)

  is_image = var.artifact.image_uri != null
  in_vpc   = length(var.subnet_ids) > 0

  base_environment = {
    DQAD_BUS_NAME           = var.bus_name
    DQAD_BUCKET             = var.bucket_name
    DQAD_DATASETS_URI       = "s3://${var.bucket_name}/config/datasets.toml"
    POWERTOOLS_SERVICE_NAME = "dqad-${var.stage}"
    LOG_LEVEL               = var.log_level
  }
}

# --- queues ------------------------------------------------------------------------------------------
resource "aws_sqs_queue" "dlq" {
  name                      = local.dlq_name
  message_retention_seconds = 1209600 # 14 days, the maximum: time for an operator to read, fix, redrive
  kms_master_key_id         = var.kms_key_arn
  tags                      = var.tags
}

resource "aws_sqs_queue" "queue" {
  name                       = local.queue_name
  visibility_timeout_seconds = var.visibility_timeout_s
  message_retention_seconds  = 345600
  kms_master_key_id          = var.kms_key_arn
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = var.max_receive_count
  })
  tags = var.tags
}

resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.queue.arn]
  })
}

data "aws_iam_policy_document" "queue" {
  statement {
    sid       = "RulesDeliver"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.queue.arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [for r in aws_cloudwatch_event_rule.rule : r.arn]
    }
  }
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [aws_sqs_queue.queue.arn]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sqs_queue_policy" "queue" {
  queue_url = aws_sqs_queue.queue.id
  policy    = data.aws_iam_policy_document.queue.json
}

data "aws_iam_policy_document" "dlq" {
  statement {
    sid       = "RuleTargetsDeadLetter"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dlq.arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = concat([for r in aws_cloudwatch_event_rule.rule : r.arn], var.extra_dlq_sources)
    }
  }
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [aws_sqs_queue.dlq.arn]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sqs_queue_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  policy    = data.aws_iam_policy_document.dlq.json
}

# --- EventBridge rules -> queue ----------------------------------------------------------------------
resource "aws_cloudwatch_event_rule" "rule" {
  for_each       = local.rules
  name           = "${var.name_prefix}-${var.stage}${each.value.suffix}"
  description    = "dqad ${var.stage}: events this stage consumes (dqad.topology)"
  event_bus_name = each.value.on_default_bus ? "default" : var.bus_name
  event_pattern  = each.value.pattern
  tags           = var.tags
}

resource "aws_cloudwatch_event_target" "queue" {
  for_each       = local.rules
  rule           = aws_cloudwatch_event_rule.rule[each.key].name
  event_bus_name = aws_cloudwatch_event_rule.rule[each.key].event_bus_name
  target_id      = "queue"
  arn            = aws_sqs_queue.queue.arn

  retry_policy {
    maximum_event_age_in_seconds = 86400
    maximum_retry_attempts       = 185
  }
  dead_letter_config {
    arn = aws_sqs_queue.dlq.arn
  }
}

# --- logs --------------------------------------------------------------------------------------------
resource "aws_cloudwatch_log_group" "function" {
  for_each          = local.all_function_names
  name              = "/aws/lambda/${each.value}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}
