# aidp auth: the JWT signing keyring (Ed25519), created at first start, rotated by admins.
path "secret/data/aidp/platform/auth-signing-keys" {
  capabilities = ["create", "read", "update"]
}
