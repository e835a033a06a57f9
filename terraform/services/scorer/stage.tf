# scorer: ModelTrained -> features + model on the new data, expected ranges, why -> AnomaliesScored.

locals {
  stage_name = "scorer"
}

data "aws_iam_policy_document" "stage" {
  statement {
    # The HMAC key of model references: the trainer signs them, the scorer verifies them.
    sid       = "ModelSigningKey"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.shared.model_signing_secret_arn]
  }
  statement {
    sid       = "RunArtifacts"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"]
    resources = ["${local.bucket_arn}/runs/*"]
  }
  statement {
    sid       = "ReadModels"
    actions   = ["s3:GetObject"]
    resources = ["${local.bucket_arn}/models/*"]
  }
  statement {
    # The join of a sharded run (dqad.shard_join): count a shard done, claim and mark the joined event.
    sid       = "ShardJoin"
    actions   = ["dynamodb:UpdateItem"]
    resources = [local.shared.shards_table_arn]
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
    DQAD_MODEL_SIGNING_SECRET_ARN = local.shared.model_signing_secret_arn
    DQAD_SHARDS_TABLE             = local.shared.shards_table_name
  }

  # reads_catalog (the default): the dataset's incident rules name the run's incidents (dqad.incidents)
  policy_json = data.aws_iam_policy_document.stage.json
  tags        = local.tags
}
