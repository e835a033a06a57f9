output "function_name" {
  value = aws_lambda_function.main.function_name
}
output "function_arn" {
  value = aws_lambda_function.main.arn
}
output "extra_function_arns" {
  value = { for k, f in aws_lambda_function.extra : k => f.arn }
}
output "extra_function_names" {
  value = { for k, f in aws_lambda_function.extra : k => f.function_name }
}
output "function_urls" {
  value = { for k, u in aws_lambda_function_url.extra : k => u.function_url }
}
output "role_arn" {
  value = aws_iam_role.this.arn
}
output "role_name" {
  value = aws_iam_role.this.name
}
output "queue_arn" {
  value = aws_sqs_queue.queue.arn
}
output "queue_url" {
  value = aws_sqs_queue.queue.id
}
output "dlq_arn" {
  value = aws_sqs_queue.dlq.arn
}
output "dlq_url" {
  value = aws_sqs_queue.dlq.id
}
output "rule_arns" {
  value = { for k, r in aws_cloudwatch_event_rule.rule : k => r.arn }
}
