locals {
  key_name = var.ssh_key_name != "" ? var.ssh_key_name : "aidp-${var.run_id}"
}

resource "intelcloud_sshkey" "run" {
  count = var.ssh_key_name == "" ? 1 : 0
  metadata = {
    name = local.key_name
  }
  spec = {
    ssh_public_key = var.ssh_public_key
  }
}

resource "intelcloud_instance" "node" {
  count = var.node_count
  name  = "aidp-${substr(replace(var.run_id, "-", ""), 0, 12)}-${count.index}"
  spec = {
    instance_type        = var.instance_type
    machine_image        = var.machine_image
    ssh_public_key_names = [local.key_name]
    user_data            = var.user_data
  }
  depends_on = [intelcloud_sshkey.run]
}
