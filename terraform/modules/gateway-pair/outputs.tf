output "inventory" {
  description = "Provider-neutral description of the hosts, read by terraform/inventory_bridge.py to write ansible/inventories/<environment>/hosts.yml."
  value = {
    schema_version = 2
    environment    = var.environment
    ssh_user       = "root"
    # The one place these networks are set (the tfvars): the hosts' own firewalls (nftables) admit
    # the same sources as the cloud firewall, through the inventory the bridge writes.
    networks = {
      admin_cidrs  = var.admin_cidrs
      device_cidrs = var.device_cidrs
    }
    vip = {
      provider       = "hcloud"
      address        = hcloud_floating_ip.vip.ip_address
      prefix         = 32
      interface      = "eth0"
      floating_ip_id = tostring(hcloud_floating_ip.vip.id)
    }
    hosts = merge(
      {
        for name, gateway in local.gateways : name => {
          group               = "gateways"
          server_name         = hcloud_server.node[name].name
          server_id           = tostring(hcloud_server.node[name].id)
          location            = hcloud_server.node[name].location
          public_ipv4         = hcloud_server.node[name].ipv4_address
          private_ip          = gateway.private_ip
          keepalived_priority = gateway.keepalived_priority
          # The public half only (null: the host made its own keys at first boot).
          ssh_host_key = terraform_data.host_public_key[name].output
        }
      },
      {
        for name, host in local.support_hosts : name => {
          group               = host.group
          server_name         = hcloud_server.node[name].name
          server_id           = tostring(hcloud_server.node[name].id)
          location            = hcloud_server.node[name].location
          public_ipv4         = hcloud_server.node[name].ipv4_address
          private_ip          = host.private_ip
          keepalived_priority = null
          ssh_host_key        = terraform_data.host_public_key[name].output
        }
      },
    )
  }
}

output "floating_ip_address" {
  description = "The VIP devices connect to (put it in DNS)."
  value       = hcloud_floating_ip.vip.ip_address
}

output "gateway_firewall_rules" {
  description = "Inbound rules of the gateways' cloud firewalls as applied (what is reachable from the internet)."
  value = [
    for rule in flatten([for firewall in concat([hcloud_firewall.gateways], hcloud_firewall.gateways_tls) : firewall.rule]) : {
      protocol   = rule.protocol
      port       = rule.port
      source_ips = sort(rule.source_ips)
    }
  ]
}
