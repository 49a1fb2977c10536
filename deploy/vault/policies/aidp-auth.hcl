# aidp auth: the JWT signing keyring (Ed25519), created at first start, rotated by admins;
# the single sign-on (OIDC) client secret, written by an operator.
path "secret/data/aidp/platform/auth-signing-keys" {
  capabilities = ["create", "read", "update"]
}
path "secret/data/aidp/platform/oidc" {
  capabilities = ["read"]
}
path "transit/sign/aidp-svc-auth" {
  capabilities = ["update"]
}
path "transit/keys/aidp-svc-*" {
  capabilities = ["read"]
}
