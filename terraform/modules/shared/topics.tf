# Alerts (business users: anomaly digests) and operator (stage failures, alarms) topics.

resource "aws_sns_topic" "alerts" {
  name              = local.names.alerts_topic
  kms_master_key_id = local.kms_key_arn
  tags              = var.tags
}

resource "aws_sns_topic" "operator" {
  name              = local.names.operator_topic
  kms_master_key_id = local.kms_key_arn
  tags              = var.tags
}

data "aws_iam_policy_document" "operator_topic" {
  statement {
    sid       = "OwnerAccountManages"
    actions   = ["sns:Publish", "sns:Subscribe", "sns:GetTopicAttributes", "sns:SetTopicAttributes", "sns:ListSubscriptionsByTopic"]
    resources = [aws_sns_topic.operator.arn]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account}:root"]
    }
  }
  statement {
    sid       = "CloudWatchAlarmsPublish"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.operator.arn]
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
}

resource "aws_sns_topic_policy" "operator" {
  arn    = aws_sns_topic.operator.arn
  policy = data.aws_iam_policy_document.operator_topic.json
}

# Email subscriptions were a manual console step; now a variable. Each address receives a
# confirmation mail and gets nothing until it is confirmed (AWS cannot confirm email for you).
resource "aws_sns_topic_subscription" "alerts_email" {
  for_each  = toset(var.alert_emails)
  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = each.value
}

resource "aws_sns_topic_subscription" "operator_email" {
  for_each  = toset(var.operator_emails)
  topic_arn = aws_sns_topic.operator.arn
  protocol  = "email"
  endpoint  = each.value
}
