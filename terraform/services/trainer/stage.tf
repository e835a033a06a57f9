# trainer: DatasetLabeled -> reuse a fresh champion, or start a SageMaker Processing job that trains
# candidates -> ModelTrained. The job's state change comes back on the default bus (rule from the
# topology, on_default_bus = true) into the same queue.

locals {
  stage_name = "trainer"
  # Jobs are named <prefix from the topology><run id>; the role may touch only those.
  job_arn_pattern = "arn:${local.partition}:sagemaker:${local.aws_region}:${local.account}:processing-job/${local.topology.sagemaker_job_prefix}*"
}

variable "trainer_image_uri" {
  description = "Image of the SageMaker Processing training job (ECR URI with an immutable tag or digest). Was a manual console step."
  type        = string
}

variable "trainer_instance_type" {
  description = "Instance type of the training job."
  type        = string
  default     = "ml.m5.large"
}

data "aws_iam_policy_document" "stage" {
  statement {
    # The HMAC key of model references: the trainer signs them, the scorer verifies them.
    sid       = "ModelSigningKey"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.shared.model_signing_secret_arn]
  }
  statement {
    sid       = "Models"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"]
    resources = ["${local.bucket_arn}/models/*"]
  }
  statement {
    # jobs/<job>.json (the request the job-state event is matched back to) and jobs/<job>/config/
    sid       = "JobRequests"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${local.bucket_arn}/jobs/*"]
  }
  statement {
    # The labels fingerprint (retrain on new human labels) reads labels/<dataset>/...
    sid       = "ReadHumanLabels"
    actions   = ["s3:GetObject"]
    resources = ["${local.bucket_arn}/labels/*"]
  }
  statement {
    sid       = "TrainingJobs"
    actions   = ["sagemaker:CreateProcessingJob", "sagemaker:AddTags"]
    resources = [local.job_arn_pattern]
  }
  statement {
    sid       = "PassJobRole"
    actions   = ["iam:PassRole"]
    resources = [local.shared.sagemaker_role_arn]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["sagemaker.amazonaws.com"]
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

  environment = {
    DQAD_JOB_RUNNER               = "sagemaker"
    DQAD_TRAINER_IMAGE_URI        = var.trainer_image_uri
    DQAD_TRAINER_INSTANCE_TYPE    = var.trainer_instance_type
    DQAD_SAGEMAKER_ROLE_ARN       = local.shared.sagemaker_role_arn
    DQAD_MODEL_SIGNING_SECRET_ARN = local.shared.model_signing_secret_arn
  }

  policy_json = data.aws_iam_policy_document.stage.json
  tags        = local.tags
}
