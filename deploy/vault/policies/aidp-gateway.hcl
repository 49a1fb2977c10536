# aidp gateway: /api/secrets stores a user's secret, lists its names and deletes it.
# It never reads a value back.
path "secret/data/aidp/users/*" {
  capabilities = ["create", "update"]
}
path "secret/metadata/aidp/users/*" {
  capabilities = ["list", "read", "delete"]
}
path "transit/sign/aidp-svc-gateway" {
  capabilities = ["update"]
}
path "transit/keys/aidp-svc-*" {
  capabilities = ["read"]
}
