output "security_group_id" {
  value = aws_security_group.endpoints.id
}
output "gateway_endpoint_ids" {
  value = { for k, e in aws_vpc_endpoint.gateway : k => e.id }
}
output "interface_endpoint_ids" {
  value = { for k, e in aws_vpc_endpoint.interface : k => e.id }
}
