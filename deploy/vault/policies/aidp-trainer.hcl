# aidp trainer: reads the run owner's secrets named in the spec; decrypts staged artifacts
# and encrypts checkpoints and trained models with the artifact key; names blobs with the
# store's naming key.
path "secret/data/aidp/users/*" {
  capabilities = ["read"]
}
path "transit/keys/aidp-artifacts" {
  capabilities = ["read"]
}
path "transit/datakey/plaintext/aidp-artifacts" {
  capabilities = ["update"]
}
path "transit/decrypt/aidp-artifacts" {
  capabilities = ["update"]
}
path "secret/data/aidp/platform/store-naming-key" {
  capabilities = ["create", "read"]
}
path "transit/sign/aidp-svc-trainer" {
  capabilities = ["update"]
}
path "transit/keys/aidp-svc-*" {
  capabilities = ["read"]
}
