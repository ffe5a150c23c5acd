# An environment root of the gateway pair on Hetzner Cloud. This file is the same in every
# environment (production/main.tf and staging/main.tf link to environments/common/main.tf); what
# is an environment's own is in its variables.tf: its name and the defaults that differ.
# The API token comes only from the environment: export HCLOUD_TOKEN=... (never a variable or a file).
terraform {
  required_version = ">= 1.8.0"

  required_providers {
    hcloud = {
      source  = "hetznercloud/hcloud"
      version = "1.52.0"
    }
  }

  # Local state by default (terraform.tfstate in this folder, git-ignored). For shared remote state
  # copy backend_override.tf.example to backend_override.tf and run `tofu init -migrate-state`.
  backend "local" {}
}

provider "hcloud" {}

locals {
  # ports.yml is the single place port numbers live; the firewall reads it rather than copying it.
  ports = yamldecode(file("${path.root}/../../../ansible/group_vars/all/ports.yml"))
}

module "gateway_pair" {
  source = "../../modules/gateway-pair"

  environment          = local.environment
  location             = var.location
  gateway_server_type  = var.gateway_server_type
  support_server_type  = var.support_server_type
  ssh_public_keys      = var.ssh_public_keys
  admin_cidrs          = var.admin_cidrs
  device_cidrs         = var.device_cidrs
  device_port          = local.ports.ngd_device_port
  device_tls_port      = var.device_tls_enabled ? local.ports.ngd_device_tls_port : null
  monitoring_enabled   = true
  collector_enabled    = var.collector_enabled
  delete_protection    = var.delete_protection
  private_network_cidr = var.private_network_cidr
  private_subnet_cidr  = var.private_subnet_cidr
  labels               = var.labels
  host_public_keys     = var.host_public_keys
  host_private_keys    = var.host_private_keys
}

output "inventory" {
  description = "Read by terraform/inventory_bridge.py (ansible/inventories/<environment>/hosts.yml)."
  value       = module.gateway_pair.inventory
}

output "floating_ip_address" {
  description = "The VIP devices connect to."
  value       = module.gateway_pair.floating_ip_address
}
