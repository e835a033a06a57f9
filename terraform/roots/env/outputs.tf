# Identical in every terraform/envs/<env>/ root (tests/terraform checks it); only *.tfvars differ.
# Read by the terraform/services/<stage> roots through terraform_remote_state.

output "name_prefix" {
  value = module.shared.name_prefix
}
output "bus_name" {
  value = module.shared.bus_name
}
output "bus_arn" {
  value = module.shared.bus_arn
}
output "bucket_name" {
  value = module.shared.bucket_name
}
output "bucket_arn" {
  value = module.shared.bucket_arn
}
output "kms_key_arn" {
  value = module.shared.kms_key_arn
}
output "alerts_topic_arn" {
  value = module.shared.alerts_topic_arn
}
output "operator_topic_arn" {
  value = module.shared.operator_topic_arn
}
output "idempotency_table_name" {
  value = module.shared.idempotency_table_name
}
output "idempotency_table_arn" {
  value = module.shared.idempotency_table_arn
}
output "shards_table_name" {
  value = module.shared.shards_table_name
}
output "shards_table_arn" {
  value = module.shared.shards_table_arn
}
output "sagemaker_role_arn" {
  value = module.shared.sagemaker_role_arn
}
output "model_signing_secret_arn" {
  value = module.shared.model_signing_secret_arn
}
output "model_signing_secret_arn" {
  value = module.shared.model_signing_secret_arn
}
output "model_signing_secret_arn" {
  value = module.shared.model_signing_secret_arn
}
output "ecr_repository_urls" {
  value = module.shared.ecr_repository_urls
}
output "vpc_endpoints_security_group_id" {
  value = var.vpc_endpoints == null ? null : module.vpc_endpoints[0].security_group_id
}
