"""The provisioner service: Node drivers and Ansible environments."""
