# Example values for the shared stack (bus, bucket, topics, table, SageMaker role, ECR).
bucket_name = "acme-dqad-dev-eu-west-1"
kms_key_arn = null # null: create a key; or the ARN of an existing one (see terraform/README.md)

alert_emails    = ["data-quality-alerts@example.com"]
operator_emails = ["data-platform-oncall@example.com"]

# Every stage carries pandas + pyarrow (> 250 MB unzipped, measured by `make package`): images.
image_services = ["fetcher", "labeler", "trainer", "scorer", "notifier"]

datasets_config_path = null

# Private subnets without NAT: uncomment to create the endpoints.
# vpc_endpoints = {
#   vpc_id             = "vpc-0123456789abcdef0"
#   subnet_ids         = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]
#   route_table_ids    = ["rtb-0123456789abcdef0"]
#   client_cidr_blocks = ["10.0.0.0/16"]
# }
