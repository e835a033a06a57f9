image_uri = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/acme-data-anomalydetection-dev/trainer:0123456789ab"
memory_mb = 1024
timeout_s = 120

# The SageMaker Processing job's image (built from services/trainer/requirements-job.txt).
trainer_image_uri     = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/acme-data-anomalydetection-dev/trainer-job:0123456789ab"
trainer_instance_type = "ml.m5.large"
