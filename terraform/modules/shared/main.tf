# Shared infrastructure of one dqad deployment: what every stage uses and no stage owns.
# Names follow dqad.topology.Names so the local runtime and AWS agree.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account   = data.aws_caller_identity.current.account_id
  region    = data.aws_region.current.name
  partition = data.aws_partition.current.partition

  names = {
    bus               = var.name_prefix
    archive           = "${var.name_prefix}-archive"
    alerts_topic      = "${var.name_prefix}-alerts"
    operator_topic    = "${var.name_prefix}-operator"
    idempotency_table = "${var.name_prefix}-idempotency"
    shards_table      = "${var.name_prefix}-shards"
    sagemaker_role    = "${var.name_prefix}-sagemaker"
    kms_alias         = "alias/${var.name_prefix}"
  }

  kms_key_arn = var.kms_key_arn != null ? var.kms_key_arn : aws_kms_key.this[0].arn
  bucket_arn  = aws_s3_bucket.data.arn
}

# --- KMS ---------------------------------------------------------------------------------------------
data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_111:Key policy, not an identity policy: "*" as resource means this key, the only resource a key policy can govern.
  #checkov:skip=CKV_AWS_356:Key policy: "*" as resource means this key (AWS requires it); the service statements are further bounded by aws:SourceAccount / encryption-context conditions.
  #checkov:skip=CKV_AWS_109:Key policy: the account-root statement is AWS's default, delegating key administration to IAM policies of this account.
  statement {
    sid       = "AccountAdministersKeyThroughIam"
    actions   = ["kms:*"]
    resources = ["*"] # in a key policy "*" means this key
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account}:root"]
    }
  }
  statement {
    sid       = "EventBridgeDeliversToEncryptedQueues"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
  statement {
    sid       = "CloudWatchAlarmsPublishToEncryptedTopics"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
  statement {
    sid       = "CloudWatchLogsEncryptsDqadLogGroups"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account}:log-group:*"]
    }
  }
}

resource "aws_kms_key" "this" {
  count                   = var.kms_key_arn == null ? 1 : 0
  description             = "dqad ${var.name_prefix}: bucket, queues, topics, table, logs"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = var.tags
}

resource "aws_kms_alias" "this" {
  count         = var.kms_key_arn == null ? 1 : 0
  name          = local.names.kms_alias
  target_key_id = aws_kms_key.this[0].key_id
}

# --- EventBridge bus + archive (replay) ---------------------------------------------------------------
resource "aws_cloudwatch_event_bus" "this" {
  name = local.names.bus
  tags = var.tags
}

resource "aws_cloudwatch_event_archive" "this" {
  name             = local.names.archive
  event_source_arn = aws_cloudwatch_event_bus.this.arn
  retention_days   = var.archive_retention_days
  description      = "Every dqad event, so any stage can be replayed from its input"
}

# --- DynamoDB shards table (labeler, scorer: the join of a sharded run, docs/architecture.md §12) -------
resource "aws_dynamodb_table" "shards" {
  name                        = local.names.shards_table
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "id"
  deletion_protection_enabled = true

  attribute {
    name = "id"
    type = "S"
  }
  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }
  point_in_time_recovery {
    enabled = true
  }
  server_side_encryption {
    enabled     = true
    kms_key_arn = local.kms_key_arn
  }
  tags = var.tags
}

# --- DynamoDB idempotency table (notifier: never send the same run twice) ------------------------------
resource "aws_dynamodb_table" "idempotency" {
  name                        = local.names.idempotency_table
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "id"
  deletion_protection_enabled = true

  attribute {
    name = "id"
    type = "S"
  }
  ttl {
    attribute_name = "expiration"
    enabled        = true
  }
  point_in_time_recovery {
    enabled = true
  }
  server_side_encryption {
    enabled     = true
    kms_key_arn = local.kms_key_arn
  }
  tags = var.tags
}
