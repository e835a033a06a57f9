# The variables every root of an environment takes, set once in envs/<env>/common.tfvars: linked from
# every terraform/envs/<env>/ root and every terraform/services/<stage>/ root (tests/terraform checks it).

variable "region" {
  description = "AWS region of the deployment."
  type        = string
}

variable "name_prefix" {
  description = "Prefix every resource name derives from (dqad.topology.Names), e.g. acme-data-AnomalyDetection-prod; the same in every root of an environment."
  type        = string
}

variable "access_department" {
  description = "Tag access-department."
  type        = string
}

variable "access_team" {
  description = "Tag access-team."
  type        = string
}

variable "bill_tag_id" {
  description = "Tag BillTagId."
  type        = string
}

variable "access_org" {
  description = "Tag access-org."
  type        = string
}

variable "tag_id" {
  description = "Tag TagID."
  type        = string
}

variable "extra_tags" {
  description = "Further tags for every resource."
  type        = map(string)
  default     = {}
}

variable "shared_state" {
  description = "Where the shared stack's (terraform/envs/<env>) state lives: the service roots read its outputs there; terraform/deploy.sh checks it against that root's backend key."
  type = object({
    bucket = string
    key    = string
    region = string
  })
}
