# Invalid inputs are rejected by the module's validation blocks (before any API call).
# The wording of each message is checked by terraform/tests/test_validation_messages.py.

# Numeric IDs: the module converts them with tonumber().
mock_provider "hcloud" {
  mock_resource "hcloud_server" {
    defaults = { id = "1001" }
  }
  mock_resource "hcloud_network" {
    defaults = { id = "2001" }
  }
  mock_resource "hcloud_floating_ip" {
    defaults = { id = "3001" }
  }
  mock_resource "hcloud_placement_group" {
    defaults = { id = "4001" }
  }
  mock_resource "hcloud_firewall" {
    defaults = { id = "5001" }
  }
}

variables {
  environment     = "production"
  ssh_public_keys = { ops = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeTestKeyNotASecret0000000000000000000 ops@test" }
  admin_cidrs     = ["198.51.100.7/32"]
}

run "rejects_retired_gateway_server_type" {
  command = plan
  variables {
    gateway_server_type = "cx32"
  }
  expect_failures = [var.gateway_server_type]
}

run "rejects_retired_support_server_type" {
  command = plan
  variables {
    support_server_type = "cx22"
  }
  expect_failures = [var.support_server_type]
}

run "rejects_ssh_open_to_ipv4_internet" {
  command = plan
  variables {
    admin_cidrs = ["198.51.100.7/32", "0.0.0.0/0"]
  }
  expect_failures = [var.admin_cidrs]
}

run "rejects_ssh_open_to_ipv6_internet" {
  command = plan
  variables {
    admin_cidrs = ["::/0"]
  }
  expect_failures = [var.admin_cidrs]
}

run "rejects_no_admin_cidrs" {
  command = plan
  variables {
    admin_cidrs = []
  }
  expect_failures = [var.admin_cidrs]
}

run "rejects_admin_cidr_not_a_cidr" {
  command = plan
  variables {
    admin_cidrs = ["office"]
  }
  expect_failures = [var.admin_cidrs]
}

run "rejects_lab_environment" {
  command = plan
  variables {
    environment = "lab"
  }
  expect_failures = [var.environment]
}

run "rejects_unknown_location" {
  command = plan
  variables {
    location = "mars1"
  }
  expect_failures = [var.location]
}

run "rejects_non_debian_image" {
  command = plan
  variables {
    image = "ubuntu-24.04"
  }
  expect_failures = [var.image]
}

run "rejects_no_ssh_keys" {
  command = plan
  variables {
    ssh_public_keys = {}
  }
  expect_failures = [var.ssh_public_keys]
}

run "rejects_private_key_instead_of_public" {
  command = plan
  variables {
    ssh_public_keys = { ops = "-----BEGIN OPENSSH PRIVATE KEY-----" }
  }
  expect_failures = [var.ssh_public_keys]
}

run "rejects_device_port_out_of_range" {
  command = plan
  variables {
    device_port = 70000
  }
  expect_failures = [var.device_port]
}

run "rejects_device_tls_port_fraction" {
  command = plan
  variables {
    device_tls_port = 56.5
  }
  expect_failures = [var.device_tls_port]
}

run "rejects_device_cidrs_empty" {
  command = plan
  variables {
    device_cidrs = []
  }
  expect_failures = [var.device_cidrs]
}

run "rejects_bad_label" {
  command = plan
  variables {
    labels = { "-bad" = "x" }
  }
  expect_failures = [var.labels]
}

run "rejects_bad_name_prefix" {
  command = plan
  variables {
    name_prefix = "Gateway_Prod"
  }
  expect_failures = [var.name_prefix]
}

run "rejects_ipv6_private_network" {
  command = plan
  variables {
    private_network_cidr = "fd00::/8"
  }
  expect_failures = [var.private_network_cidr]
}

run "rejects_subnet_too_small" {
  command = plan
  variables {
    private_subnet_cidr = "10.53.1.0/28"
  }
  expect_failures = [var.private_subnet_cidr]
}

run "rejects_subnet_outside_network" {
  command = plan
  variables {
    private_network_cidr = "10.53.0.0/16"
    private_subnet_cidr  = "10.54.1.0/24"
  }
  expect_failures = [hcloud_network_subnet.hosts]
}
