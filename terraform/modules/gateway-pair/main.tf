# The HA gateway pair on Hetzner Cloud: two gateways on different physical hosts (spread placement
# group), a private network for VRRP unicast and the gateways' peer sync, one floating IPv4 (the VIP)
# that keepalived moves between them through the Hetzner API, and cloud firewalls for the public side.

locals {
  name = "${var.name_prefix}-${var.environment}"

  network_zones = {
    fsn1 = "eu-central"
    nbg1 = "eu-central"
    hel1 = "eu-central"
    ash  = "us-east"
    hil  = "us-west"
    sin  = "ap-southeast"
  }

  common_labels = merge(var.labels, {
    "app.nanogridata.io/environment" = var.environment
    "app.nanogridata.io/managed-by"  = "opentofu"
  })

  # Inventory names are those of the inventory contract; keepalived priorities decide the MASTER.
  gateways = {
    "gw-a" = { private_ip = cidrhost(var.private_subnet_cidr, 11), keepalived_priority = 150 }
    "gw-b" = { private_ip = cidrhost(var.private_subnet_cidr, 12), keepalived_priority = 100 }
  }

  support_hosts = merge(
    var.monitoring_enabled ? { "mon" = { group = "monitoring", private_ip = cidrhost(var.private_subnet_cidr, 20) } } : {},
    var.collector_enabled ? { "collector" = { group = "collectors", private_ip = cidrhost(var.private_subnet_cidr, 30) } } : {},
  )

  # What cloud-init writes per host: null when the host has no key in the state (it makes its own).
  host_keys = {
    for name in keys(merge(local.gateways, local.support_hosts)) : name => (
      terraform_data.host_public_key[name].output == null ? null : {
        public  = terraform_data.host_public_key[name].output
        private = terraform_data.host_private_key[name].output
      }
    )
  }
}

# Each host's SSH host key, kept from the host's first apply on: the value given then (deploy.sh
# generates fresh keys for every plan) is stored here and later values are ignored, so a key never
# changes under running hosts and a server that is replaced comes back with the same key. The
# private key is in the state and the server's user data (both to be kept as secret as the API
# token); the public key goes to the inventory output and from there into known_hosts.
resource "terraform_data" "host_public_key" {
  for_each = merge(local.gateways, local.support_hosts)

  input = lookup(var.host_public_keys, each.key, null)

  lifecycle {
    ignore_changes = [input]
    precondition {
      condition     = sort(keys(var.host_public_keys)) == sort(keys(var.host_private_keys))
      error_message = "host_public_keys and host_private_keys must name the same hosts."
    }
  }
}

resource "terraform_data" "host_private_key" {
  for_each = merge(local.gateways, local.support_hosts)

  input = lookup(var.host_private_keys, each.key, null)

  lifecycle {
    ignore_changes = [input]
  }
}

resource "hcloud_ssh_key" "admin" {
  for_each = var.ssh_public_keys

  name       = "${local.name}-${each.key}"
  public_key = trimspace(each.value)
  labels     = local.common_labels
}

resource "hcloud_placement_group" "gateways" {
  name   = "${local.name}-gateways"
  type   = "spread"
  labels = local.common_labels
}

resource "hcloud_network" "private" {
  name     = "${local.name}-private"
  ip_range = var.private_network_cidr
  labels   = local.common_labels
}

resource "hcloud_network_subnet" "hosts" {
  network_id   = tonumber(hcloud_network.private.id)
  type         = "cloud"
  network_zone = local.network_zones[var.location]
  ip_range     = var.private_subnet_cidr

  lifecycle {
    precondition {
      # The subnet's address masked to the network's prefix must be the network's address.
      condition     = cidrhost("${split("/", var.private_subnet_cidr)[0]}/${split("/", var.private_network_cidr)[1]}", 0) == cidrhost(var.private_network_cidr, 0) && tonumber(split("/", var.private_subnet_cidr)[1]) >= tonumber(split("/", var.private_network_cidr)[1])
      error_message = "private_subnet_cidr (${var.private_subnet_cidr}) must lie inside private_network_cidr (${var.private_network_cidr})."
    }
  }
}

# Hetzner firewalls filter public traffic only (private networks are not filtered), so VRRP and
# the private ports need no rule. Rules are static blocks so that reviewers and checkov's
# CKV_NGD_1 see them; ICMP stays open to everyone for path-MTU discovery and ping.
resource "hcloud_firewall" "gateways" {
  name   = "${local.name}-gateways"
  labels = local.common_labels

  rule {
    description = "ssh from admin networks"
    direction   = "in"
    protocol    = "tcp"
    port        = tostring(var.ssh_port)
    source_ips  = var.admin_cidrs
  }

  rule {
    description = "devices"
    direction   = "in"
    protocol    = "tcp"
    port        = tostring(var.device_port)
    source_ips  = var.device_cidrs
  }

  rule {
    description = "icmp"
    direction   = "in"
    protocol    = "icmp"
    source_ips  = ["0.0.0.0/0", "::/0"]
  }
}

# The optional TLS device port is a firewall of its own: checkov drops static rule blocks when a
# dynamic one sits beside them, which would blind CKV_NGD_1 to the SSH rule above.
resource "hcloud_firewall" "gateways_tls" {
  count = var.device_tls_port == null ? 0 : 1

  name   = "${local.name}-gateways-tls"
  labels = local.common_labels

  rule {
    description = "devices over tls"
    direction   = "in"
    protocol    = "tcp"
    port        = tostring(var.device_tls_port)
    source_ips  = var.device_cidrs
  }
}

resource "hcloud_firewall" "support" {
  count = length(local.support_hosts) > 0 ? 1 : 0

  name   = "${local.name}-support"
  labels = local.common_labels

  rule {
    description = "ssh from admin networks"
    direction   = "in"
    protocol    = "tcp"
    port        = tostring(var.ssh_port)
    source_ips  = var.admin_cidrs
  }

  rule {
    description = "icmp"
    direction   = "in"
    protocol    = "icmp"
    source_ips  = ["0.0.0.0/0", "::/0"]
  }
}

# Every node, gateways and support hosts alike, is one kind of server; what differs per kind is
# in local.servers (size, placement, firewalls, role label).
locals {
  servers = merge(
    { for name, host in local.gateways : name => {
      private_ip         = host.private_ip
      role               = "gateway"
      server_type        = var.gateway_server_type
      placement_group_id = tonumber(hcloud_placement_group.gateways.id)
      firewall_ids       = [for firewall in concat([hcloud_firewall.gateways], hcloud_firewall.gateways_tls) : tonumber(firewall.id)]
    } },
    { for name, host in local.support_hosts : name => {
      private_ip         = host.private_ip
      role               = host.group
      server_type        = var.support_server_type
      placement_group_id = null
      firewall_ids       = [tonumber(hcloud_firewall.support[0].id)]
    } },
  )
}

resource "hcloud_server" "node" {
  for_each = local.servers

  name               = "${local.name}-${each.key}"
  server_type        = each.value.server_type
  image              = var.image
  location           = var.location
  placement_group_id = each.value.placement_group_id
  ssh_keys           = [for key in hcloud_ssh_key.admin : key.id]
  firewall_ids       = each.value.firewall_ids
  user_data          = templatefile("${path.module}/cloud-init.yaml.tftpl", { hostname = each.key, host_key = local.host_keys[each.key] })
  delete_protection  = var.delete_protection
  rebuild_protection = var.delete_protection
  labels             = merge(local.common_labels, { "app.nanogridata.io/role" = each.value.role, "app.nanogridata.io/host" = each.key })

  public_net {
    ipv4_enabled = true
    ipv6_enabled = true
  }

  network {
    network_id = tonumber(hcloud_network.private.id)
    ip         = each.value.private_ip
    # An empty list avoids a detach/attach on every apply (provider issue #650).
    alias_ips = []
  }

  # The server joins the network only once the subnet exists (see the provider's hcloud_server docs).
  depends_on = [hcloud_network_subnet.hosts]

  lifecycle {
    # Keys are injected at creation only; rotating them is Ansible's job, not a reason to rebuild.
    # public_net is fixed above; an imported server (scripts/deploy.sh adopts those an interrupted
    # apply created) has none in its state, and the provider would power every server off and on
    # to "enable" the addresses it already has.
    ignore_changes = [ssh_keys, user_data, public_net]
  }
}

# Servers created when gateways and support hosts were two resources keep their identity.
moved {
  from = hcloud_server.gateway["gw-a"]
  to   = hcloud_server.node["gw-a"]
}
moved {
  from = hcloud_server.gateway["gw-b"]
  to   = hcloud_server.node["gw-b"]
}
moved {
  from = hcloud_server.support["mon"]
  to   = hcloud_server.node["mon"]
}
moved {
  from = hcloud_server.support["collector"]
  to   = hcloud_server.node["collector"]
}

resource "hcloud_floating_ip" "vip" {
  name              = "${local.name}-vip"
  type              = "ipv4"
  home_location     = var.location
  description       = "Device-facing VIP of ${local.name}; keepalived moves it on failover"
  delete_protection = var.delete_protection
  labels            = local.common_labels
}

resource "hcloud_floating_ip_assignment" "vip" {
  floating_ip_id = tonumber(hcloud_floating_ip.vip.id)
  # gw-a is the VRRP MASTER at start (highest keepalived priority), so it holds the VIP first.
  server_id = tonumber(hcloud_server.node["gw-a"].id)

  lifecycle {
    # keepalived reassigns the floating IP through the Hetzner API on failover: that is not drift,
    # and a later apply must not move the VIP back behind keepalived's back.
    ignore_changes = [server_id]
  }
}
