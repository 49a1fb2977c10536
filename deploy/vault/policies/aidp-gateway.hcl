# aidp gateway: /api/secrets stores a user's secret, lists its names and deletes it.
# It never reads a value back. It seals webhook signing secrets with the platform's
# webhook key (created once by the first gateway, never replaced).
path "secret/data/aidp/users/*" {
  capabilities = ["create", "update"]
}
path "secret/metadata/aidp/users/*" {
  capabilities = ["list", "read", "delete"]
}
path "secret/data/aidp/platform/webhook-key" {
  capabilities = ["create", "read"]
}
path "transit/sign/aidp-svc-gateway" {
  capabilities = ["update"]
}
path "transit/keys/aidp-svc-*" {
  capabilities = ["read"]
}
