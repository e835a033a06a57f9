# Execution role of the trainer's SageMaker Processing jobs. The trainer Lambda passes it
# (iam:PassRole, scoped to this role and to sagemaker.amazonaws.com).

data "aws_iam_policy_document" "sagemaker_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["sagemaker.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_iam_role" "sagemaker" {
  name               = local.names.sagemaker_role
  assume_role_policy = data.aws_iam_policy_document.sagemaker_trust.json
  tags               = var.tags
}

locals {
  sagemaker_ecr_arns = [for r in aws_ecr_repository.service : r.arn]
}

data "aws_iam_policy_document" "sagemaker" {
  statement {
    sid       = "ReadInputs"
    actions   = ["s3:GetObject"]
    resources = ["${local.bucket_arn}/runs/*", "${local.bucket_arn}/config/*", "${local.bucket_arn}/models/*", "${local.bucket_arn}/jobs/*"]
  }
  statement {
    # Model versions only: models/<dataset>/<version>/...; never models/<dataset>/champion.json,
    # which only the trainer Lambda promotes (and signs).
    sid       = "WriteModels"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload"]
    resources = ["${local.bucket_arn}/models/*/*/*"]
  }
  statement {
    sid       = "ListOwnPrefixes"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["runs/*", "models/*", "jobs/*"]
    }
  }
  statement {
    sid       = "UseDataKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [local.kms_key_arn]
  }
  statement {
    sid       = "JobLogs"
    actions   = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["arn:${local.partition}:logs:${local.region}:${local.account}:log-group:/aws/sagemaker/ProcessingJobs*"]
  }
  statement {
    sid       = "JobMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"] # PutMetricData has no resource type; scoped by namespace below
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = ["/aws/sagemaker/ProcessingJobs"]
    }
  }
  dynamic "statement" {
    for_each = length(local.sagemaker_ecr_arns) > 0 ? [1] : []
    content {
      sid       = "PullJobImage"
      actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
      resources = local.sagemaker_ecr_arns
    }
  }
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # GetAuthorizationToken has no resource type
  }
}

resource "aws_iam_role_policy" "sagemaker" {
  name   = "dqad-processing-job"
  role   = aws_iam_role.sagemaker.id
  policy = data.aws_iam_policy_document.sagemaker.json
}
