# aidp fetcher: reads the run owner's HF / Kaggle tokens; encrypts what it caches (one data
# key per blob, wrapped by the artifact key) and decrypts cached blobs to verify them; names
# blobs with the store's naming key (created once by the first service, never replaced).
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
path "transit/sign/aidp-svc-fetcher" {
  capabilities = ["update"]
}
path "transit/keys/aidp-svc-*" {
  capabilities = ["read"]
}
