# Repositories for the stages deployed as container images (pandas/scikit-learn exceed the zip limit).

resource "aws_ecr_repository" "service" {
  for_each             = var.image_services
  name                 = lower("${var.name_prefix}/${each.key}") # ECR names must be lowercase
  image_tag_mutability = "IMMUTABLE"                             # a tag always means one image: rollbacks are exact

  image_scanning_configuration {
    scan_on_push = true
  }
  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = local.kms_key_arn
  }
  tags = var.tags
}

resource "aws_ecr_lifecycle_policy" "service" {
  for_each   = aws_ecr_repository.service
  repository = each.value.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Keep the last 30 images (enough to roll back)"
      selection    = { tagStatus = "any", countType = "imageCountMoreThan", countNumber = 30 }
      action       = { type = "expire" }
    }]
  })
}
