# Identical in every terraform/envs/<env>/ root (tests/terraform checks it); only *.tfvars differ.
# The shared stack of one environment. Stages are separate roots: terraform/services/<stage>.

locals {
  tags = merge(var.extra_tags, {
    "access-department" = var.access_department
    "access-team"       = var.access_team
    "BillTagId"         = var.bill_tag_id
    "access-org"        = var.access_org
    "TagID"             = var.tag_id
  })
}

module "shared" {
  source = "../../modules/shared"

  name_prefix            = var.name_prefix
  bucket_name            = var.bucket_name
  kms_key_arn            = var.kms_key_arn
  alert_emails           = var.alert_emails
  operator_emails        = var.operator_emails
  image_services         = var.image_services
  archive_retention_days = var.archive_retention_days
  runs_expiration_days   = var.runs_expiration_days
  access_logs_bucket     = var.access_logs_bucket
  tags                   = local.tags
}

module "vpc_endpoints" {
  source = "../../modules/vpc_endpoints"
  count  = var.vpc_endpoints == null ? 0 : 1

  name_prefix        = var.name_prefix
  vpc_id             = var.vpc_endpoints.vpc_id
  subnet_ids         = var.vpc_endpoints.subnet_ids
  route_table_ids    = var.vpc_endpoints.route_table_ids
  client_cidr_blocks = var.vpc_endpoints.client_cidr_blocks
  interface_services = coalesce(var.vpc_endpoints.interface_services, ["secretsmanager", "ssm", "events", "sqs", "sns", "sagemaker.api", "lambda", "redshift-data", "sts"])
  tags               = local.tags
}

resource "aws_s3_object" "datasets_config" {
  count        = var.datasets_config_path == null ? 0 : 1
  bucket       = module.shared.bucket_name
  key          = "config/datasets.toml"
  source       = var.datasets_config_path
  source_hash  = filemd5(var.datasets_config_path)
  content_type = "application/toml"
  kms_key_id   = module.shared.kms_key_arn
  tags         = local.tags
}
