variable "location" {
  description = "Hetzner location of the pair (see modules/gateway-pair)."
  type        = string
  default     = "fsn1"
}

variable "gateway_server_type" {
  description = "Server type of the gateways."
  type        = string
  default     = "cx23"
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
  default     = true
}

variable "labels" {
  description = "Extra labels on every resource."
  type        = map(string)
  default     = {}
}
