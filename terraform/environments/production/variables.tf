# Production's own: its name and the variables whose defaults are production's. The variables
# every environment has are in variables_common.tf, the root's body in main.tf (both linked from
# environments/common/).

locals {
  environment = "production"
}

variable "gateway_server_type" {
  description = "Server type of the gateways."
  type        = string
  default     = "cx33"
}

variable "collector_enabled" {
  description = "Create a collector host (VictoriaMetrics + HTTP JSON collector)."
  type        = bool
  default     = false
}

variable "delete_protection" {
  description = "Delete/rebuild protection of the servers and the floating IP. Set false, apply, then destroy: the only way to decommission (terraform/README.md)."
  type        = bool
  default     = true
}
