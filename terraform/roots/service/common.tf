# Identical in every terraform/services/<stage>/ root (tests/terraform checks it); edit all or none.
# The stage-specific part is stage.tf (local.stage_name, module "service", its policy).

data "terraform_remote_state" "shared" {
  backend = "s3"
  config = {
    bucket = var.shared_state.bucket
    key    = var.shared_state.key
    region = var.shared_state.region
  }
}

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  shared     = data.terraform_remote_state.shared.outputs
  account    = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  aws_region = data.aws_region.current.name

  # The one topology (generated from shared/dqad/topology.py by terraform/gen_topology.py).
  topology = jsondecode(file("${path.module}/../../topology.json"))
  stage    = local.topology.stages[local.stage_name]

  tags = merge(var.extra_tags, {
    "access-department" = var.access_department
    "access-team"       = var.access_team
    "BillTagId"         = var.bill_tag_id
    "access-org"        = var.access_org
    "TagID"             = var.tag_id
    "dqad-stage"        = local.stage_name
  })

  bucket_arn = local.shared.bucket_arn

  # Content-addressed key: a rebuilt but identical zip is the same object, so nothing redeploys.
  zip_key = var.zip_path == null ? null : "artifacts/${local.stage_name}/${filesha256(var.zip_path)}.zip"
  artifact = {
    image_uri = var.image_uri
    s3_bucket = var.zip_path == null ? null : local.shared.bucket_name
    s3_key    = var.zip_path == null ? null : aws_s3_object.artifact[0].key # uploaded before the function
    sha256    = var.zip_path == null ? null : filebase64sha256(var.zip_path)
  }
}

resource "aws_s3_object" "artifact" {
  count       = var.zip_path == null ? 0 : 1
  bucket      = local.shared.bucket_name
  key         = local.zip_key
  source      = var.zip_path
  source_hash = filemd5(var.zip_path)
  kms_key_id  = local.shared.kms_key_arn
  tags        = local.tags
}

output "name_prefix" {
  value = var.name_prefix
  precondition {
    condition     = var.name_prefix == local.shared.name_prefix
    error_message = "name_prefix differs from the shared stack's: the stage would look for a bus, bucket and topics that do not exist."
  }
}

output "function_name" {
  value = module.service.function_name
}

output "queue_url" {
  value = module.service.queue_url
}

output "dlq_url" {
  value = module.service.dlq_url
}
