# The stage's functions: the SQS-fed entry point, and the extra entry points of the same artifact.

resource "aws_lambda_function" "main" {
  #checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile per organisation; artifacts are reproducible builds (code + hash-locked requirements.lock) pinned by SHA-256 (source_code_hash / immutable ECR tags) instead.
  #checkov:skip=CKV_AWS_117:VPC placement is a variable (subnet_ids): only stages reaching a private database need it, and a static scan cannot see the dynamic vpc_config block.
  function_name = local.function_name
  description   = "dqad ${var.stage} (SQS-fed)"
  role          = aws_iam_role.this.arn
  package_type  = local.is_image ? "Image" : "Zip"
  image_uri     = var.artifact.image_uri
  s3_bucket     = var.artifact.s3_bucket
  s3_key        = var.artifact.s3_key
  handler       = local.is_image ? null : var.handler
  runtime       = local.is_image ? null : var.runtime
  # A new zip (different hash) updates the code; an unchanged one does not.
  source_code_hash = var.artifact.sha256
  architectures    = ["x86_64"] # wheels are built for manylinux x86_64
  memory_size      = var.memory_mb
  timeout          = var.timeout_s

  reserved_concurrent_executions = var.reserved_concurrency
  kms_key_arn                    = var.kms_key_arn

  dynamic "image_config" {
    for_each = local.is_image ? [1] : []
    content {
      command = [var.handler]
    }
  }

  # Entry points with a function URL are announced to the SQS-fed function as DQAD_<ENTRY>_URL
  # (the notifier's DQAD_FEEDBACK_URL), so the root needs no reference back into this module.
  environment {
    variables = merge(
      local.base_environment,
      { for k, u in aws_lambda_function_url.extra : "DQAD_${upper(k)}_URL" => u.function_url },
      var.environment,
    )
  }

  tracing_config {
    mode = "Active"
  }

  # Asynchronous invocations that fail land in the stage's DLQ; SQS-fed ones use the queue's redrive.
  dead_letter_config {
    target_arn = aws_sqs_queue.dlq.arn
  }

  dynamic "vpc_config" {
    for_each = local.in_vpc ? [1] : []
    content {
      subnet_ids         = var.subnet_ids
      security_group_ids = var.security_group_ids
    }
  }

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.function["main"].name
  }

  tags       = var.tags
  depends_on = [aws_iam_role_policy.base]

  lifecycle {
    precondition {
      condition     = var.timeout_s <= var.visibility_timeout_s
      error_message = "The function timeout must not exceed the queue's visibility timeout (dqad.topology.VISIBILITY_TIMEOUT_S)."
    }
  }
}

resource "aws_lambda_function" "extra" {
  #checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile per organisation; artifacts are reproducible builds (code + hash-locked requirements.lock) pinned by SHA-256 instead.
  #checkov:skip=CKV_AWS_117:VPC placement is a variable (subnet_ids); a static scan cannot see the dynamic vpc_config block.
  for_each         = var.extra_functions
  function_name    = local.extra_function_names[each.key]
  description      = "dqad ${var.stage} (${each.key})"
  role             = each.value.policy_json == null ? aws_iam_role.this.arn : aws_iam_role.extra[each.key].arn
  package_type     = local.is_image ? "Image" : "Zip"
  image_uri        = var.artifact.image_uri
  s3_bucket        = var.artifact.s3_bucket
  s3_key           = var.artifact.s3_key
  handler          = local.is_image ? null : each.value.handler
  runtime          = local.is_image ? null : var.runtime
  source_code_hash = var.artifact.sha256
  architectures    = ["x86_64"]
  memory_size      = each.value.memory_mb
  timeout          = each.value.timeout_s

  reserved_concurrent_executions = var.reserved_concurrency
  kms_key_arn                    = var.kms_key_arn

  dynamic "image_config" {
    for_each = local.is_image ? [1] : []
    content {
      command = [each.value.handler]
    }
  }

  environment {
    variables = merge(local.base_environment, each.value.environment)
  }

  tracing_config {
    mode = "Active"
  }

  dead_letter_config {
    target_arn = aws_sqs_queue.dlq.arn
  }

  dynamic "vpc_config" {
    for_each = local.in_vpc ? [1] : []
    content {
      subnet_ids         = var.subnet_ids
      security_group_ids = var.security_group_ids
    }
  }

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.function[each.key].name
  }

  tags       = var.tags
  depends_on = [aws_iam_role_policy.base, aws_iam_role_policy.extra]
}

# Extra entry points are invoked asynchronously (Aurora 'Event' invocations, schedules): bounded
# retries, then the stage's DLQ, never a silent drop.
resource "aws_lambda_function_event_invoke_config" "extra" {
  for_each                     = var.extra_functions
  function_name                = aws_lambda_function.extra[each.key].function_name
  maximum_retry_attempts       = each.value.async_retries
  maximum_event_age_in_seconds = 21600
  destination_config {
    on_failure {
      destination = aws_sqs_queue.dlq.arn
    }
  }
}

resource "aws_lambda_function_url" "extra" {
  #checkov:skip=CKV_AWS_258:The only URL is the notifier's feedback link, opened from an email by people without AWS credentials; the handler verifies an HMAC signature (secret in Secrets Manager) and an expiry on every request.
  for_each           = { for k, f in var.extra_functions : k => f if f.function_url_auth != null }
  function_name      = aws_lambda_function.extra[each.key].function_name
  authorization_type = each.value.function_url_auth
}

# A URL with auth type NONE still needs a resource-based grant, or AWS answers 403 to everyone.
resource "aws_lambda_permission" "url" {
  #checkov:skip=CKV_AWS_301:Public by design and limited to InvokeFunctionUrl with auth type NONE: the feedback page is opened from an email without AWS credentials; it runs under its own role (read the key, put labels/*) and verifies an HMAC signature and an expiry on every request.
  for_each               = { for k, f in var.extra_functions : k => f if f.function_url_auth == "NONE" }
  statement_id           = "AllowPublicFunctionUrl"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.extra[each.key].function_name
  principal              = "*"
  function_url_auth_type = "NONE"
}

resource "aws_lambda_event_source_mapping" "queue" {
  event_source_arn                   = aws_sqs_queue.queue.arn
  function_name                      = aws_lambda_function.main.arn
  batch_size                         = var.batch_size
  maximum_batching_window_in_seconds = var.batching_window_s
  function_response_types            = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.maximum_concurrency
  }
}
