# aidp auth: the JWT signing keyring (Ed25519), created at first start, rotated by admins.
path "secret/data/aidp/platform/auth-signing-keys" {
  capabilities = ["create", "read", "update"]
}
path "transit/sign/aidp-svc-auth" {
  capabilities = ["update"]
}
path "transit/keys/aidp-svc-*" {
  capabilities = ["read"]
}
