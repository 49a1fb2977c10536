output "instances" {
  description = "One object per node, in index order: what the provisioner needs to reach it."
  value = [
    for instance in intelcloud_instance.node : {
      id            = instance.id
      name          = instance.name
      private_ip    = instance.status.interfaces[0].addresses[0]
      user_name     = instance.status.user_name
      proxy_user    = instance.status.ssh_proxy.proxy_user
      proxy_address = instance.status.ssh_proxy.proxy_address
      proxy_port    = instance.status.ssh_proxy.proxy_port
    }
  ]
}

output "ssh_key_name" {
  description = "The SSH key name the instances accept."
  value       = local.key_name
}

output "run_id" {
  description = "The aidp run these resources belong to."
  value       = var.run_id
}
