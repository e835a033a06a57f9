# Example values: read by terraform/envs/dev and by every terraform/services/<stage> root for dev.
region      = "eu-west-1"
name_prefix = "acme-data-AnomalyDetection-dev"

access_department = "data-platform"
access_team       = "data-quality"
bill_tag_id       = "BT-000000"
access_org        = "acme"
tag_id            = "dqad-dev"

# Must match backend.hcl and the key terraform/deploy.sh uses for the shared root (<env>/shared.tfstate).
shared_state = {
  bucket = "acme-dqad-tfstate-dev"
  key    = "dev/shared.tfstate"
  region = "eu-west-1"
}
