# Applies the module against a mocked hcloud provider (no API, no token) and checks the topology
# the HA design depends on. Mock IDs are numeric strings because the module converts them with
# tonumber(), as with the real provider. OpenTofu 1.10 cannot mock instances of one for_each
# resource differently, so both gateways share id 1001 (and one random ipv4_address): that the VIP
# goes to gw-a and not gw-b is checked on a real, offline plan instead (terraform/tests/test_plan.py).

mock_provider "hcloud" {
  mock_resource "hcloud_server" {
    defaults = { id = "1001" }
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
  mock_resource "hcloud_floating_ip_assignment" {
    defaults = { id = "7001" }
  }
}


# A distinct ID for the optional TLS firewall, so that servers visibly carry both firewalls.
override_resource {
  target = hcloud_firewall.gateways_tls
  values = { id = "5002" }
}

variables {
  environment     = "production"
  ssh_public_keys = { ops = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeTestKeyNotASecret0000000000000000000 ops@test" }
  admin_cidrs     = ["198.51.100.7/32", "2001:db8:1::/48"]
}

run "pair_with_defaults" {
  assert {
    condition     = toset([for k, s in hcloud_server.node : k if s.labels["app.nanogridata.io/role"] == "gateway"]) == toset(["gw-a", "gw-b"])
    error_message = "expected exactly two gateways, gw-a and gw-b"
  }

  assert {
    condition     = hcloud_server.node["gw-a"].name == "ngd-production-gw-a" && hcloud_server.node["gw-b"].name == "ngd-production-gw-b"
    error_message = "server names must be <prefix>-<environment>-<host>"
  }

  assert {
    condition     = alltrue([for s in [for k in ["gw-a", "gw-b"] : hcloud_server.node[k]] : s.image == "debian-12" && s.location == "fsn1" && s.server_type == "cx23"])
    error_message = "gateways must run Debian 12 of the default type in the default location"
  }

  assert {
    condition     = hcloud_placement_group.gateways.type == "spread"
    error_message = "the gateways' placement group must be of type spread"
  }

  assert {
    condition     = alltrue([for s in [for k in ["gw-a", "gw-b"] : hcloud_server.node[k]] : s.placement_group_id == 4001])
    error_message = "both gateways must be in the spread placement group"
  }

  assert {
    condition     = [for n in hcloud_server.node["gw-a"].network : n.ip] == ["10.53.1.11"] && [for n in hcloud_server.node["gw-b"].network : n.ip] == ["10.53.1.12"]
    error_message = "gateways must have the fixed private IPs .11 (gw-a) and .12 (gw-b)"
  }

  assert {
    condition     = alltrue(flatten([for s in [for k in ["gw-a", "gw-b"] : hcloud_server.node[k]] : [for n in s.network : n.network_id == 2001]]))
    error_message = "gateways must be attached to the module's private network"
  }

  assert {
    condition     = hcloud_network.private.ip_range == "10.53.0.0/16" && hcloud_network_subnet.hosts.ip_range == "10.53.1.0/24" && hcloud_network_subnet.hosts.network_zone == "eu-central" && hcloud_network_subnet.hosts.type == "cloud"
    error_message = "private network or subnet differs from the defaults"
  }

  assert {
    condition     = hcloud_floating_ip.vip.type == "ipv4" && hcloud_floating_ip.vip.home_location == "fsn1"
    error_message = "the VIP must be an IPv4 floating IP homed in the pair's location"
  }

  assert {
    condition     = hcloud_floating_ip_assignment.vip.server_id == 1001 && hcloud_floating_ip_assignment.vip.floating_ip_id == 3001
    error_message = "the floating IP must be assigned to a gateway server (id 1001)"
  }

  assert {
    condition     = alltrue([for s in [for k in ["gw-a", "gw-b"] : hcloud_server.node[k]] : s.firewall_ids == toset([5001])]) && length(hcloud_firewall.gateways_tls) == 0
    error_message = "gateways must be behind the gateway firewall only (no TLS firewall by default)"
  }

  # The firewall, rule by rule: exactly SSH from the admin networks, the device port from the
  # device networks (defaults: everywhere) and ICMP; nothing else.
  assert {
    condition = toset([
      for r in hcloud_firewall.gateways.rule :
      "${r.direction} ${r.protocol} ${coalesce(r.port, "-")} ${join(",", sort(r.source_ips))}"
      ]) == toset([
      "in tcp 22 198.51.100.7/32,2001:db8:1::/48",
      "in tcp 5678 0.0.0.0/0,::/0",
      "in icmp - 0.0.0.0/0,::/0",
    ])
    error_message = "gateway firewall rules differ from: ssh from admins, device port from devices, icmp"
  }

  assert {
    condition = alltrue([
      for r in concat(tolist(hcloud_firewall.gateways.rule), tolist(hcloud_firewall.support[0].rule)) :
      !(r.port == "22" && (contains(r.source_ips, "0.0.0.0/0") || contains(r.source_ips, "::/0")))
    ])
    error_message = "SSH must never be open to 0.0.0.0/0 or ::/0"
  }

  assert {
    condition     = toset(keys(hcloud_server.node)) == toset(["gw-a", "gw-b", "mon"]) && [for n in hcloud_server.node["mon"].network : n.ip] == ["10.53.1.20"]
    error_message = "by default only the monitoring host (10.53.1.20) is created besides the gateways"
  }

  assert {
    condition = toset([
      for r in hcloud_firewall.support[0].rule : "${r.protocol} ${coalesce(r.port, "-")}"
    ]) == toset(["tcp 22", "icmp -"])
    error_message = "support hosts must expose only SSH (admins) and ICMP publicly"
  }

  assert {
    condition     = alltrue([for s in [for k in ["gw-a", "gw-b"] : hcloud_server.node[k]] : !s.delete_protection]) && !hcloud_floating_ip.vip.delete_protection
    error_message = "delete protection is off by default"
  }
}

run "inventory_output_shape" {
  assert {
    condition     = output.inventory.schema_version == 2 && output.inventory.environment == "production" && output.inventory.ssh_user == "root"
    error_message = "inventory output header is wrong"
  }

  assert {
    condition = output.inventory.vip == {
      provider       = "hcloud"
      address        = "198.51.100.53"
      prefix         = 32
      interface      = "eth0"
      floating_ip_id = "3001"
    }
    error_message = "inventory vip must describe the floating IP (hcloud, /32 on eth0, its id and address)"
  }

  assert {
    condition     = output.inventory.networks.admin_cidrs == tolist(var.admin_cidrs) && output.inventory.networks.device_cidrs == tolist(var.device_cidrs)
    error_message = "inventory networks must carry admin_cidrs and device_cidrs as given (the hosts' firewalls read them)"
  }

  assert {
    condition     = toset(keys(output.inventory.hosts)) == toset(["gw-a", "gw-b", "mon"])
    error_message = "inventory hosts must be gw-a, gw-b and mon by default"
  }

  assert {
    condition = merge(output.inventory.hosts["gw-a"], { ssh_host_key = null }) == {
      group               = "gateways"
      server_name         = "ngd-production-gw-a"
      server_id           = "1001"
      location            = "fsn1"
      public_ipv4         = hcloud_server.node["gw-a"].ipv4_address
      private_ip          = "10.53.1.11"
      keepalived_priority = 150
      ssh_host_key        = null
    }
    error_message = "inventory entry of gw-a is wrong"
  }

  assert {
    condition     = output.inventory.hosts["gw-a"].ssh_host_key == null
    error_message = "no host key given: none may be published (the host makes its own)"
  }

  assert {
    condition     = output.inventory.hosts["gw-b"].keepalived_priority == 100 && output.inventory.hosts["gw-b"].public_ipv4 == hcloud_server.node["gw-b"].ipv4_address && output.inventory.hosts["gw-b"].private_ip == "10.53.1.12"
    error_message = "inventory entry of gw-b is wrong (priority 100, its own addresses)"
  }

  assert {
    condition     = output.inventory.hosts["mon"].group == "monitoring" && output.inventory.hosts["mon"].keepalived_priority == null && output.inventory.hosts["mon"].public_ipv4 == hcloud_server.node["mon"].ipv4_address
    error_message = "inventory entry of mon is wrong"
  }

  assert {
    condition     = output.floating_ip_address == "198.51.100.53"
    error_message = "floating_ip_address output must be the VIP"
  }
}

run "tls_port_collector_custom_network" {
  variables {
    environment          = "staging"
    name_prefix          = "acme"
    location             = "hel1"
    device_tls_port      = 5683
    device_cidrs         = ["192.0.2.0/24"]
    collector_enabled    = true
    private_network_cidr = "10.60.0.0/16"
    private_subnet_cidr  = "10.60.2.0/24"
    delete_protection    = true
  }

  assert {
    condition = toset([
      for r in output.gateway_firewall_rules :
      "${r.protocol} ${coalesce(r.port, "-")} ${join(",", r.source_ips)}"
      ]) == toset([
      "tcp 22 198.51.100.7/32,2001:db8:1::/48",
      "tcp 5678 192.0.2.0/24",
      "tcp 5683 192.0.2.0/24",
      "icmp - 0.0.0.0/0,::/0",
    ])
    error_message = "with device_tls_port the gateways must also get the TLS port, to the device networks only"
  }

  assert {
    condition     = length(hcloud_firewall.gateways_tls) == 1 && alltrue([for s in [for k in ["gw-a", "gw-b"] : hcloud_server.node[k]] : s.firewall_ids == toset([5001, 5002])])
    error_message = "the TLS port is a second firewall attached to both gateways"
  }

  assert {
    condition = {
      for name, host in output.inventory.hosts : name => host.private_ip
      } == {
      "gw-a"      = "10.60.2.11"
      "gw-b"      = "10.60.2.12"
      "mon"       = "10.60.2.20"
      "collector" = "10.60.2.30"
    }
    error_message = "private IPs must follow the subnet: .11, .12, .20, .30"
  }

  assert {
    condition     = output.inventory.hosts["collector"].group == "collectors" && hcloud_server.node["gw-a"].name == "acme-staging-gw-a"
    error_message = "collector host or naming is wrong"
  }

  assert {
    condition     = alltrue([for s in [for k in ["gw-a", "gw-b"] : hcloud_server.node[k]] : s.delete_protection && s.rebuild_protection && s.location == "hel1"]) && hcloud_floating_ip.vip.delete_protection
    error_message = "delete_protection must protect servers (delete and rebuild) and the floating IP"
  }
}

run "no_support_hosts" {
  variables {
    monitoring_enabled = false
    collector_enabled  = false
  }

  assert {
    condition     = toset(keys(hcloud_server.node)) == toset(["gw-a", "gw-b"]) && length(hcloud_firewall.support) == 0 && toset(keys(output.inventory.hosts)) == toset(["gw-a", "gw-b"])
    error_message = "without monitoring and collector only the pair is created"
  }
}

run "device_port_default_matches_ports_yml" {
  command = plan

  # ports.yml is the only place port numbers live: the module's default must agree with it.
  assert {
    condition     = var.device_port == yamldecode(file("${path.module}/../../../ansible/group_vars/all/ports.yml")).ngd_device_port
    error_message = "variable device_port's default differs from ngd_device_port in ansible/group_vars/all/ports.yml"
  }
}
