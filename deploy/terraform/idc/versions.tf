terraform {
  required_version = ">= 1.5"
  required_providers {
    intelcloud = {
      source  = "intel/intelcloud"
      version = "~> 0.0.19"
    }
  }
}

# Credentials come from the environment: ITAC_REGION, ITAC_CLOUDACCOUNT, ITAC_CLIENT_ID,
# ITAC_CLIENT_SECRET (the provisioner sets them from Vault or its settings; never in files).
provider "intelcloud" {
  region = var.region
}
