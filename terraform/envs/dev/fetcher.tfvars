# Example values for the fetcher root. image_uri: pushed by `make package SERVICE=fetcher` + docker push.
image_uri = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/acme-data-anomalydetection-dev/fetcher:0123456789ab"

memory_mb           = 2048
timeout_s           = 600
maximum_concurrency = 2 # concurrent Redshift queries
batch_size          = 1

redshift = {
  cluster_identifier = "acme-warehouse"
  db_user            = "dqad_reader"
  databases          = ["analytics"]
}
outbox_dsn_secret_arn     = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:dqad/dev/outbox-dsn-AbCdEf"
aurora_cluster_identifier = "acme-etl-logs"

# The sweeper reaches Aurora: run the fetcher in the database's private subnets.
subnet_ids                = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]
security_group_ids        = ["sg-0123456789abcdef0"]
redshift_unload_role_name = "acme-warehouse-unload"
