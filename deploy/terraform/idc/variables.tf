variable "region" {
  description = "Intel Tiber AI Cloud region, e.g. us-region-2."
  type        = string
  default     = "us-region-2"
}

variable "availability_zone" {
  description = "Availability zone (region + \"a\")."
  type        = string
  default     = "us-region-2a"
}

variable "run_id" {
  description = "aidp run id: names and labels every resource (the reaper keys on it)."
  type        = string
}

variable "project_id" {
  description = "aidp project id (a label)."
  type        = string
  default     = ""
}

variable "node_count" {
  description = "Number of instances for the run."
  type        = number
  default     = 1
  validation {
    condition     = var.node_count >= 1 && var.node_count <= 16
    error_message = "node_count must be between 1 and 16."
  }
}

variable "instance_type" {
  description = "Instance type, e.g. vm-spr-sml or bm-icp-gaudi2."
  type        = string
  default     = "vm-spr-sml"
}

variable "machine_image" {
  description = "Machine image name."
  type        = string
  default     = "ubuntu-2204-jammy-v20230122"
}

variable "ssh_key_name" {
  description = "Name of an SSH public key already registered (the provisioner registers the run's key)."
  type        = string
  default     = ""
}

variable "ssh_public_key" {
  description = "Public key to register when ssh_key_name is empty."
  type        = string
  default     = ""
}

variable "user_data" {
  description = "cloud-init user data for every instance."
  type        = string
  default     = "#cloud-config\npackages: [python3, python3-venv]\n"
}
