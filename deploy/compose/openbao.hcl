storage "file" { path = "/openbao/data" }
listener "tcp" {
  address     = "0.0.0.0:8200"
  tls_disable = true  # terminate TLS here in production: set tls_cert_file / tls_key_file
}
api_addr      = "http://openbao:8200"
disable_mlock = true
