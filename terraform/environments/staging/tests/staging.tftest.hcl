# The staging root module wired to the gateway-pair module, with a mocked hcloud provider:
# ports come from ansible/group_vars/all/ports.yml, staging adds a collector host.

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

run "staging_defaults" {
  assert {
    condition     = output.inventory.environment == "staging" && toset(keys(output.inventory.hosts)) == toset(["gw-a", "gw-b", "mon", "collector"])
    error_message = "staging must create the pair, the monitoring host and a collector"
  }

  assert {
    condition     = toset([for r in module.gateway_pair.gateway_firewall_rules : r.port if r.protocol == "tcp"]) == toset(["22", tostring(yamldecode(file("${path.module}/../../../ansible/group_vars/all/ports.yml")).ngd_device_port)])
    error_message = "the firewall must open SSH and ngd_device_port from ansible/group_vars/all/ports.yml, nothing else"
  }
}
