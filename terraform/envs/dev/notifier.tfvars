image_uri = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/acme-data-anomalydetection-dev/notifier:0123456789ab"
memory_mb = 1024
timeout_s = 120

# Slack / Teams / webhook channels of the datasets (docs/alerts.md, "Channels"): the secrets holding
# their webhook URLs, e.g. ["arn:aws:secretsmanager:eu-west-1:123456789012:secret:dqad/sales-slack-AbCdEf"].
channel_secret_arns          = []
channel_secrets_kms_key_arns = []
