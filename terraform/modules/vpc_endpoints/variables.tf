variable "name_prefix" {
  description = "Prefix of the endpoints' security group name."
  type        = string
}

variable "vpc_id" {
  description = "VPC whose private subnets host the dqad Lambdas (and where Aurora lives)."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets of the interface endpoints (one per AZ)."
  type        = list(string)
}

variable "route_table_ids" {
  description = "Route tables of the private subnets, for the gateway endpoints (S3, DynamoDB)."
  type        = list(string)
}

variable "client_cidr_blocks" {
  description = "CIDR blocks allowed to reach the interface endpoints on 443 (the Lambdas' and Aurora's subnets)."
  type        = list(string)
}

variable "gateway_services" {
  description = "Gateway endpoints (free): S3 for the data bucket, DynamoDB for the notifier's idempotency table."
  type        = set(string)
  default     = ["s3", "dynamodb"]
}

variable "interface_services" {
  description = "Interface endpoints: what stages in private subnets without NAT call, plus lambda so that Aurora can invoke the fetcher."
  type        = set(string)
  default     = ["secretsmanager", "ssm", "events", "sqs", "sns", "sagemaker.api", "lambda", "redshift-data", "sts"]
}

variable "tags" {
  description = "Tags applied explicitly to every resource."
  type        = map(string)
}
