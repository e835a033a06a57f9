# Example: the S3 bucket holding Terraform state for this environment (create it once, by hand or by
# your organisation's bootstrap; versioned and encrypted). Used by every root of the environment.
bucket       = "acme-dqad-tfstate-prod"
region       = "eu-west-1"
encrypt      = true
use_lockfile = true
