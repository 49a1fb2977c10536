# OpenBao 2.x: integrated (raft) storage; the file backend is gone.
storage "raft" {
  path    = "/openbao/data"
  node_id = "aidp-openbao-1"
}
listener "tcp" {
  address     = "0.0.0.0:8200"
  tls_disable = true  # terminate TLS here in production: set tls_cert_file / tls_key_file
}
api_addr     = "http://openbao:8200"
cluster_addr = "http://openbao:8201"
