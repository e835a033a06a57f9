output "name_prefix" {
  value = var.name_prefix
}
output "bus_name" {
  value = aws_cloudwatch_event_bus.this.name
}
output "bus_arn" {
  value = aws_cloudwatch_event_bus.this.arn
}
output "archive_name" {
  value = aws_cloudwatch_event_archive.this.name
}
output "bucket_name" {
  value = aws_s3_bucket.data.bucket
}
output "bucket_arn" {
  value = aws_s3_bucket.data.arn
}
output "kms_key_arn" {
  value = local.kms_key_arn
}
output "alerts_topic_arn" {
  value = aws_sns_topic.alerts.arn
}
output "operator_topic_arn" {
  value = aws_sns_topic.operator.arn
}
output "idempotency_table_name" {
  value = aws_dynamodb_table.idempotency.name
}
output "idempotency_table_arn" {
  value = aws_dynamodb_table.idempotency.arn
}
output "shards_table_name" {
  value = aws_dynamodb_table.shards.name
}
output "shards_table_arn" {
  value = aws_dynamodb_table.shards.arn
}
output "sagemaker_role_arn" {
  value = aws_iam_role.sagemaker.arn
}
output "model_signing_secret_arn" {
  value = aws_secretsmanager_secret.model_signing.arn
}
output "ecr_repository_urls" {
  value = { for k, r in aws_ecr_repository.service : k => r.repository_url }
}
output "ecr_repository_arns" {
  value = { for k, r in aws_ecr_repository.service : k => r.arn }
}
