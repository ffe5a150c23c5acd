variable "location" {
  description = "Hetzner location of the pair (see modules/gateway-pair)."
  type        = string
  default     = "fsn1"
}

variable "gateway_server_type" {
  description = "Server type of the gateways."
  type        = string
  default     = "cx33"
}

variable "support_server_type" {
  description = "Server type of the monitoring (and collector) host."
  type        = string
  default     = "cx23"
}

variable "ssh_public_keys" {
  description = "OpenSSH public keys of the operators, by name."
  type        = map(string)
}

variable "admin_cidrs" {
  description = "Networks allowed to reach SSH."
  type        = list(string)
}

variable "device_cidrs" {
  description = "Networks the devices connect from."
  type        = list(string)
  default     = ["0.0.0.0/0", "::/0"]
}

variable "device_tls_enabled" {
  description = "Open the TLS device port (ngd_device_tls_port) as well."
  type        = bool
  default     = false
}

variable "collector_enabled" {
  description = "Create a collector host (VictoriaMetrics + HTTP JSON collector)."
  type        = bool
  default     = false
}

variable "labels" {
  description = "Extra labels on every resource."
  type        = map(string)
  default     = {}
}

variable "private_network_cidr" {
  description = "IP range of the private network; change it only when it overlaps a network of yours (VPN, peering)."
  type        = string
  default     = "10.53.0.0/16"
}

variable "private_subnet_cidr" {
  description = "The hosts' subnet inside private_network_cidr (.11 gw-a, .12 gw-b, .20 mon, .30 collector)."
  type        = string
  default     = "10.53.1.0/24"
}

variable "delete_protection" {
  description = "Delete/rebuild protection of the servers and the floating IP. Set false, apply, then destroy: the only way to decommission (terraform/README.md)."
  type        = bool
  default     = true
}
