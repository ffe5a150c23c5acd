# The production root module wired to the gateway-pair module, with a mocked hcloud provider:
# ports come from ansible/group_vars/all/ports.yml, production protects against deletion.

mock_provider "hcloud" {
  mock_resource "hcloud_server" {
    defaults = { id = "1001", ipv4_address = "203.0.113.11" }
  }
  mock_resource "hcloud_network" {
    defaults = { id = "2001" }
  }
  mock_resource "hcloud_floating_ip" {
    defaults = { id = "3001", ip_address = "198.51.100.53" }
  }
  mock_resource "hcloud_placement_group" {
    defaults = { id = "4001" }
  }
  mock_resource "hcloud_firewall" {
    defaults = { id = "5001" }
  }
  mock_resource "hcloud_ssh_key" {
    defaults = { id = "6001" }
  }
}

variables {
  ssh_public_keys = { ops = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeTestKeyNotASecret0000000000000000000 ops@test" }
  admin_cidrs     = ["198.51.100.7/32"]
}

run "production_defaults" {
  assert {
    condition     = output.inventory.environment == "production" && toset(keys(output.inventory.hosts)) == toset(["gw-a", "gw-b", "mon"])
    error_message = "production must create the pair and the monitoring host, no collector by default"
  }

  assert {
    condition     = toset([for r in module.gateway_pair.gateway_firewall_rules : r.port if r.protocol == "tcp"]) == toset(["22", tostring(yamldecode(file("${path.module}/../../../ansible/group_vars/all/ports.yml")).ngd_device_port)])
    error_message = "the firewall must open SSH and ngd_device_port from ansible/group_vars/all/ports.yml, nothing else"
  }

  assert {
    condition     = output.floating_ip_address == output.inventory.vip.address
    error_message = "floating_ip_address and the inventory's VIP must agree"
  }
}

run "production_with_tls_port" {
  variables {
    device_tls_enabled = true
  }

  assert {
    condition     = contains([for r in module.gateway_pair.gateway_firewall_rules : r.port], tostring(yamldecode(file("${path.module}/../../../ansible/group_vars/all/ports.yml")).ngd_device_tls_port))
    error_message = "device_tls_enabled must open ngd_device_tls_port from ports.yml"
  }
}
