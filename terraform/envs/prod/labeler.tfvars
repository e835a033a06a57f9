image_uri  = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/acme-data-anomalydetection-prod/labeler:0123456789ab"
memory_mb  = 2048
timeout_s  = 300
batch_size = 1 # one shard per invocation: memory bounded by one shard (docs/architecture.md §12)
