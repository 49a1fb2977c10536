# aidp provisioner: reads the run owner's SSH identities and Intel Tiber AI Cloud
# credentials, and the platform's own IDC credentials.
path "secret/data/aidp/users/*" {
  capabilities = ["read"]
}
path "secret/data/aidp/platform/idc" {
  capabilities = ["read"]
}
path "transit/sign/aidp-svc-provisioner" {
  capabilities = ["update"]
}
path "transit/keys/aidp-svc-*" {
  capabilities = ["read"]
}
