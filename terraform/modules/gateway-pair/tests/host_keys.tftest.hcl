# SSH host keys: given at a host's first apply, kept in the state, written by cloud-init and
# published in the inventory output (scripts/deploy.sh writes known_hosts from it). A file of its
# own: the runs of a file share one state, and the first apply decides the keys.

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


variables {
  environment     = "production"
  ssh_public_keys = { ops = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeTestKeyNotASecret0000000000000000000 ops@test" }
  admin_cidrs     = ["198.51.100.7/32"]
  host_public_keys = {
    "gw-a" = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOfGwAForTestsOnly00000000000000000 gw-a"
    "gw-b" = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOfGwBForTestsOnly00000000000000000 gw-b"
    "mon"  = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOfMonForTestsOnly0000000000000000 mon"
  }
  # Not keys: the module only checks the OpenSSH armour.
  host_private_keys = {
    "gw-a" = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-key-gw-a\n-----END OPENSSH PRIVATE KEY-----\n"
    "gw-b" = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-key-gw-b\n-----END OPENSSH PRIVATE KEY-----\n"
    "mon"  = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-key-mon\n-----END OPENSSH PRIVATE KEY-----\n"
  }
}

run "host_keys_must_come_in_pairs" {
  command = plan

  variables {
    host_private_keys = {}
  }

  expect_failures = [terraform_data.host_public_key]
}

run "host_keys_reach_cloud_init_and_the_inventory" {
  assert {
    condition     = output.inventory.hosts["gw-b"].ssh_host_key == var.host_public_keys["gw-b"] && output.inventory.hosts["mon"].ssh_host_key == var.host_public_keys["mon"]
    error_message = "the inventory output must publish each host's public host key (known_hosts is written from it)"
  }

  assert {
    condition     = strcontains(nonsensitive(hcloud_server.node["gw-a"].user_data), "ed25519_public: ${var.host_public_keys["gw-a"]}") && strcontains(nonsensitive(hcloud_server.node["gw-a"].user_data), "    not-a-key-gw-a") && strcontains(nonsensitive(hcloud_server.node["gw-a"].user_data), "ssh_genkeytypes: [ed25519]")
    error_message = "gw-a's user data must install its own host key pair and generate no other"
  }
}

run "later_keys_do_not_replace_those_of_the_state" {
  variables {
    host_public_keys = {
      "gw-a" = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAnotherKeyOfANextDeployRun0000000000000000 gw-a"
      "gw-b" = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAnotherKeyOfANextDeployRun0000000000000000 gw-b"
      "mon"  = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAnotherKeyOfANextDeployRun0000000000000000 mon"
    }
  }

  assert {
    condition     = output.inventory.hosts["gw-a"].ssh_host_key == "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOfGwAForTestsOnly00000000000000000 gw-a"
    error_message = "a host keeps the key of its first apply: deploy.sh's fresh keys of a later run must not change it"
  }
}
