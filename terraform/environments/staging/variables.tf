# Staging's own: its name and the variables whose defaults are staging's (smaller gateways, a
# collector host, no delete protection: staging is made and destroyed freely). The variables
# every environment has are in variables_common.tf, the root's body in main.tf (both linked from
# environments/common/).

locals {
  environment = "staging"
}

variable "gateway_server_type" {
  description = "Server type of the gateways."
  type        = string
  default     = "cx23"
}

variable "collector_enabled" {
  description = "Create a collector host (VictoriaMetrics + HTTP JSON collector)."
  type        = bool
  default     = true
}

variable "delete_protection" {
  description = "Delete/rebuild protection of the servers and the floating IP (off in staging, which is made and destroyed freely)."
  type        = bool
  default     = false
}
