# The stage's own role: the platform needs (logs, its queue, its DLQ, the key) plus what every stage's
# code does through dqad.stage (publish events, log them under events/, read config/), plus the
# stage-specific statements the root passes in var.policy_json. tests/terraform/test_terraform_iam.py
# compares all of it with what the code calls (terraform/iam_actions.json and an AST scan).

data "aws_iam_policy_document" "trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "this" {
  name               = local.role_name
  assume_role_policy = data.aws_iam_policy_document.trust.json
  tags               = var.tags
}

data "aws_iam_policy_document" "base" {
  source_policy_documents = [data.aws_iam_policy_document.vpc.json]
  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [for g in aws_cloudwatch_log_group.function : "${g.arn}:*"]
  }
  statement {
    sid       = "ConsumeOwnQueue"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
    resources = [aws_sqs_queue.queue.arn]
  }
  statement {
    sid       = "DeadLetterOwnDlq"
    actions   = ["sqs:SendMessage", "sqs:GetQueueUrl"]
    resources = [aws_sqs_queue.dlq.arn]
  }
  statement {
    sid       = "UseDeploymentKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }
  statement {
    # Only the stage's own source: a stage cannot impersonate another (e.g. put a ModelTrained).
    sid       = "PublishOnDqadBus"
    actions   = ["events:PutEvents"]
    resources = [var.bus_arn]
    condition {
      test     = "StringEquals"
      variable = "events:source"
      values   = ["dqad.${var.stage}"]
    }
  }
  dynamic "statement" {
    # The dataset catalog (config/datasets.toml): options per dataset (the scorer: its incident rules).
    for_each = var.reads_catalog ? [1] : []
    content {
      sid       = "ReadConfig"
      actions   = ["s3:GetObject"]
      resources = ["${var.bucket_arn}/config/*"]
    }
  }
  statement {
    # Unconditional on purpose: Storage.exists() uses HeadObject, which answers 404 for a missing key
    # only with s3:ListBucket, and HeadObject requests carry no s3:prefix a condition could match.
    sid       = "ListDqadBucket"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arn]
  }
  statement {
    # Write-only: no stage reads the event log back (`dqad replay` does, with the operator's rights).
    sid       = "LogEvents"
    actions   = ["s3:PutObject"]
    resources = ["${var.bucket_arn}/events/*"]
  }
  statement {
    sid       = "Tracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"] # X-Ray trace APIs have no resource type
  }
}

# Only with subnet_ids: Lambda manages the functions' network interfaces (stage role and own roles).
data "aws_iam_policy_document" "vpc" {
  dynamic "statement" {
    for_each = local.in_vpc ? [1] : []
    content {
      sid       = "VpcDescribe"
      actions   = ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"]
      resources = ["*"] # Describe* APIs have no resource type
    }
  }
  dynamic "statement" {
    for_each = local.in_vpc ? [1] : []
    content {
      sid     = "VpcInterfaces"
      actions = ["ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"]
      resources = concat(
        ["arn:${local.partition}:ec2:${local.region}:${local.account}:network-interface/*"],
        [for s in var.subnet_ids : "arn:${local.partition}:ec2:${local.region}:${local.account}:subnet/${s}"],
        [for g in var.security_group_ids : "arn:${local.partition}:ec2:${local.region}:${local.account}:security-group/${g}"],
      )
    }
  }
}

resource "aws_iam_role_policy" "base" {
  name   = "dqad-stage-base"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.base.json
}

resource "aws_iam_role_policy" "stage" {
  name   = "dqad-${var.stage}"
  role   = aws_iam_role.this.id
  policy = var.policy_json
}

# --- entry points with their own role (policy_json set): only what that entry point calls ---------
locals {
  own_role_functions = { for k, f in var.extra_functions : k => f if f.policy_json != null }
}

resource "aws_iam_role" "extra" {
  for_each           = local.own_role_functions
  name               = "${local.role_name}-${each.key}"
  assume_role_policy = data.aws_iam_policy_document.trust.json
  tags               = var.tags
}

data "aws_iam_policy_document" "extra_logs" {
  for_each                = local.own_role_functions
  source_policy_documents = [data.aws_iam_policy_document.vpc.json] # it shares the stage's subnets
  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function[each.key].arn}:*"]
  }
  statement {
    sid       = "AsyncDeadLetter" # dead_letter_config / on_failure destination of the function
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dlq.arn]
  }
  statement {
    sid       = "UseDeploymentKey" # its environment, its secret, SSE-KMS writes, the encrypted DLQ
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }
  statement {
    sid       = "Tracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"] # X-Ray trace APIs have no resource type
  }
}

resource "aws_iam_role_policy" "extra" {
  for_each = local.own_role_functions
  name     = "dqad-${var.stage}-${each.key}"
  role     = aws_iam_role.extra[each.key].id
  policy   = each.value.policy_json
}

resource "aws_iam_role_policy" "extra_logs" {
  for_each = local.own_role_functions
  name     = "dqad-${var.stage}-${each.key}-logs"
  role     = aws_iam_role.extra[each.key].id
  policy   = data.aws_iam_policy_document.extra_logs[each.key].json
}
