variable "environment" {
  description = "Environment name; becomes ngd_env in the Ansible inventory and part of every resource name."
  type        = string

  validation {
    condition     = contains(["staging", "production"], var.environment)
    error_message = "environment must be \"staging\" or \"production\" (the lab is not built with OpenTofu)."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name: <name_prefix>-<environment>-<host>."
  type        = string
  default     = "ngd"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.name_prefix))
    error_message = "name_prefix must be 1-20 characters of a-z, 0-9 and '-', starting with a letter (it becomes part of hostnames)."
  }
}

variable "location" {
  description = "Hetzner location of the gateway pair. A spread placement group keeps the two servers on different physical hosts of this one location."
  type        = string
  default     = "fsn1"

  validation {
    condition     = contains(["fsn1", "nbg1", "hel1", "ash", "hil", "sin"], var.location)
    error_message = "location must be one of fsn1, nbg1, hel1, ash, hil, sin."
  }
}

variable "gateway_server_type" {
  description = "Server type of the two gateways."
  type        = string
  default     = "cx23"

  validation {
    condition     = can(regex("^[a-z]+[0-9]+[a-z]*$", var.gateway_server_type))
    error_message = "gateway_server_type must be a Hetzner server type name such as cx23, cx33 or cax11."
  }

  # Hetzner deprecated the CX Gen2 and CPX Gen1 types on 2025-10-16 and stopped selling them: the
  # API refuses to create them, so a plan with one would fail only at apply, half-way.
  validation {
    condition     = !contains(["cx22", "cx32", "cx42", "cx52", "cpx11", "cpx21", "cpx31", "cpx41", "cpx51"], var.gateway_server_type)
    error_message = "gateway_server_type ${var.gateway_server_type} is retired by Hetzner (deprecated 2025-10-16): use the successor of the same size (cx22 -> cx23, cx32 -> cx33, cx42 -> cx43, cx52 -> cx53) or another current type."
  }
}

variable "support_server_type" {
  description = "Server type of the optional monitoring and collector hosts."
  type        = string
  default     = "cx23"

  validation {
    condition     = can(regex("^[a-z]+[0-9]+[a-z]*$", var.support_server_type))
    error_message = "support_server_type must be a Hetzner server type name such as cx23, cx33 or cax11."
  }

  # Hetzner deprecated the CX Gen2 and CPX Gen1 types on 2025-10-16 and stopped selling them: the
  # API refuses to create them, so a plan with one would fail only at apply, half-way.
  validation {
    condition     = !contains(["cx22", "cx32", "cx42", "cx52", "cpx11", "cpx21", "cpx31", "cpx41", "cpx51"], var.support_server_type)
    error_message = "support_server_type ${var.support_server_type} is retired by Hetzner (deprecated 2025-10-16): use the successor of the same size (cx22 -> cx23, cx32 -> cx33, cx42 -> cx43, cx52 -> cx53) or another current type."
  }
}

variable "image" {
  description = "Server image. The Ansible roles target Debian 12."
  type        = string
  default     = "debian-12"

  validation {
    condition     = var.image == "debian-12" || can(regex("^[0-9]+$", var.image))
    error_message = "image must be \"debian-12\" or the numeric ID of a Debian 12 snapshot (the roles support Debian 12 only)."
  }
}

variable "labels" {
  description = "Extra labels on every resource (Hetzner label syntax)."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([
      for key, value in var.labels :
      can(regex("^([a-z0-9A-Z][a-z0-9A-Z._-]{0,61}[a-z0-9A-Z]|[a-z0-9A-Z])$", key)) &&
      can(regex("^(|[a-z0-9A-Z][a-z0-9A-Z._-]{0,61}[a-z0-9A-Z]|[a-z0-9A-Z])$", value))
    ])
    error_message = "labels keys and values must be at most 63 characters of letters, digits, '.', '_' or '-', starting and ending with a letter or digit."
  }
}

variable "ssh_public_keys" {
  description = "SSH public keys allowed to log in as root (Ansible's first connection), by name."
  type        = map(string)

  validation {
    condition     = length(var.ssh_public_keys) > 0
    error_message = "ssh_public_keys must hold at least one key: Ansible needs it for its first connection."
  }

  validation {
    condition = alltrue([
      for key in values(var.ssh_public_keys) :
      can(regex("^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh.com) [A-Za-z0-9+/=]+( .*)?$", trimspace(key)))
    ])
    error_message = "ssh_public_keys values must be OpenSSH public keys (\"ssh-ed25519 AAAA... comment\"), not private keys or file paths."
  }
}

variable "admin_cidrs" {
  description = "CIDRs allowed to reach SSH (operators, CI runners). Never the whole internet."
  type        = list(string)

  validation {
    condition     = length(var.admin_cidrs) > 0
    error_message = "admin_cidrs must list at least one CIDR (your office or bastion), e.g. [\"198.51.100.7/32\"]."
  }

  validation {
    condition     = alltrue([for cidr in var.admin_cidrs : can(cidrhost(cidr, 0))])
    error_message = "admin_cidrs entries must be CIDRs such as \"198.51.100.7/32\" or \"2001:db8::/48\"."
  }

  validation {
    condition     = alltrue([for cidr in var.admin_cidrs : !can(regex("/0$", cidr))])
    error_message = "admin_cidrs must not open SSH to the whole internet (0.0.0.0/0 or ::/0): list your admin networks."
  }
}

variable "device_cidrs" {
  description = "CIDRs the devices connect from (the device port on the floating IP). Fleets on mobile networks usually need the whole internet."
  type        = list(string)
  default     = ["0.0.0.0/0", "::/0"]

  validation {
    condition     = length(var.device_cidrs) > 0 && alltrue([for cidr in var.device_cidrs : can(cidrhost(cidr, 0))])
    error_message = "device_cidrs must be a non-empty list of CIDRs such as \"0.0.0.0/0\" or \"203.0.113.0/24\"."
  }
}

variable "device_port" {
  description = "TCP port devices connect to. Must equal ngd_device_port in ansible/group_vars/all/ports.yml (a test checks it)."
  type        = number
  default     = 5678

  validation {
    condition     = var.device_port >= 1 && var.device_port <= 65535 && floor(var.device_port) == var.device_port
    error_message = "device_port must be an integer between 1 and 65535."
  }
}

variable "device_tls_port" {
  description = "Optional TLS device port (ngd_device_tls_port in ports.yml); null keeps it closed."
  type        = number
  default     = null

  validation {
    condition     = var.device_tls_port == null || try(var.device_tls_port >= 1 && var.device_tls_port <= 65535 && floor(var.device_tls_port) == var.device_tls_port, false)
    error_message = "device_tls_port must be null or an integer between 1 and 65535."
  }
}

variable "ssh_port" {
  description = "SSH port opened to admin_cidrs."
  type        = number
  default     = 22

  validation {
    condition     = var.ssh_port >= 1 && var.ssh_port <= 65535 && floor(var.ssh_port) == var.ssh_port
    error_message = "ssh_port must be an integer between 1 and 65535."
  }
}

variable "private_network_cidr" {
  description = "IP range of the private network (VRRP unicast, gateway peer sync, scraping)."
  type        = string
  default     = "10.53.0.0/16"

  validation {
    condition     = can(cidrhost(var.private_network_cidr, 0)) && !can(regex(":", var.private_network_cidr))
    error_message = "private_network_cidr must be an IPv4 CIDR such as \"10.53.0.0/16\"."
  }
}

variable "private_subnet_cidr" {
  description = "Subnet of private_network_cidr holding the hosts; hosts get fixed addresses .11 (gw-a), .12 (gw-b), .20 (mon), .30 (collector)."
  type        = string
  default     = "10.53.1.0/24"

  validation {
    condition     = can(cidrhost(var.private_subnet_cidr, 30)) && !can(regex(":", var.private_subnet_cidr)) && try(tonumber(split("/", var.private_subnet_cidr)[1]) <= 27, false)
    error_message = "private_subnet_cidr must be an IPv4 CIDR of at least /27 such as \"10.53.1.0/24\" (hosts use offsets up to .30)."
  }
}

variable "monitoring_enabled" {
  description = "Create the monitoring host (Prometheus, Alertmanager, blackbox, Grafana provisioning)."
  type        = bool
  default     = true
}

variable "collector_enabled" {
  description = "Create a collector host (VictoriaMetrics + HTTP JSON collector). Off when the customer runs their own collectors."
  type        = bool
  default     = false
}

variable "delete_protection" {
  description = "Protect servers and the floating IP against deletion (recommended for production)."
  type        = bool
  default     = false
}

variable "host_public_keys" {
  description = "SSH host public keys per host name (gw-a, gw-b, mon, collector), \"ssh-ed25519 AAAA...\", with their private halves in host_private_keys. scripts/deploy.sh generates fresh ones for every plan; a host's key is kept in the state from its first apply on (later values are ignored), written by cloud-init and published in the inventory output, so known_hosts comes from OpenTofu, not from the first connection. A host without one makes its own keys (its first contact then needs deploy.sh --trust-new-host-keys)."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for name, key in var.host_public_keys : can(regex("^ssh-ed25519 [A-Za-z0-9+/=]+( .*)?$", trimspace(key)))])
    error_message = "host_public_keys values must be ed25519 public keys, \"ssh-ed25519 AAAA...\" (ssh-keygen -t ed25519)."
  }
}

variable "host_private_keys" {
  description = "The OpenSSH private halves of host_public_keys, same host names."
  type        = map(string)
  default     = {}
  sensitive   = true

  validation {
    condition     = alltrue([for name, key in var.host_private_keys : strcontains(key, "BEGIN OPENSSH PRIVATE KEY")])
    error_message = "host_private_keys values must be OpenSSH private keys (ssh-keygen -t ed25519)."
  }
}
