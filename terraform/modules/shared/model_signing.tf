# The HMAC key of model references (docs/architecture.md §8, habit 11): the trainer signs the model
# reference of every ModelTrained and champion.json, the scorer verifies it before loading a byte of
# the model (whoever chose the model would choose the alarms). Only those two roles may read it; the
# SageMaker job role and the other stages cannot, so no one else can make a reference the scorer accepts.
resource "random_password" "model_signing" {
  length  = 64
  special = false
}

resource "aws_secretsmanager_secret" "model_signing" {
  #checkov:skip=CKV2_AWS_57:Rotation must keep the previous key readable while references signed with it are in flight; rotate deliberately by writing {"current": new, "previous": old} (dqad.signing.parse_secret).
  name        = "${var.name_prefix}-model-signing"
  description = "dqad: HMAC key signing model references (trainer signs, scorer verifies)"
  kms_key_id  = local.kms_key_arn
  tags        = var.tags
}

resource "aws_secretsmanager_secret_version" "model_signing" {
  secret_id     = aws_secretsmanager_secret.model_signing.id
  secret_string = random_password.model_signing.result
}
