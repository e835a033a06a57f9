#!/usr/bin/env bash
# Deploy one dqad root of one environment: `make deploy SERVICE=<stage|shared> ENV=<env>`.
#   terraform/deploy.sh <stage|shared> <env> [plan|apply|destroy] [extra terraform args...]
# A stage root is terraform/services/<stage>; "shared" is terraform/envs/<env>. Each has its own state
# (<env>/<root>.tfstate in the bucket of envs/<env>/backend.hcl), so a stage deploys and rolls back
# alone. Needs the terraform binary and AWS credentials (neither exists in the dev container).
set -euo pipefail

service="${1:?usage: deploy.sh <stage|shared> <env> [plan|apply|destroy]}"
env="${2:?usage: deploy.sh <stage|shared> <env> [plan|apply|destroy]}"
action="${3:-apply}"
shift $(( $# < 3 ? $# : 3 ))

here="$(cd "$(dirname "$0")" && pwd)"
envdir="$here/envs/$env"
[[ -d "$envdir" ]] || { echo "no environment $envdir" >&2; exit 2; }

if [[ "$service" == "shared" ]]; then
  root="$envdir"
  varfiles=(-var-file="$envdir/common.tfvars" -var-file="$envdir/shared.tfvars")
else
  root="$here/services/$service"
  [[ -d "$root" ]] || { echo "no service root $root (stages: $(ls "$here/services" | tr '\n' ' '))" >&2; exit 2; }
  varfiles=(-var-file="$envdir/common.tfvars" -var-file="$envdir/$service.tfvars")
fi

# Regenerate nothing here: terraform/topology.json is checked in and tested against dqad.topology.
terraform -chdir="$root" init -input=false -reconfigure \
  -backend-config="$envdir/backend.hcl" -backend-config="key=$env/$service.tfstate"
terraform -chdir="$root" "$action" -input=false "${varfiles[@]}" "$@"
