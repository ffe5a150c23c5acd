terraform {
  # mock_provider in `tofu test` needs OpenTofu >= 1.8; tools/install-tofu.sh pins the build.
  required_version = ">= 1.8.0"

  required_providers {
    hcloud = {
      source  = "hetznercloud/hcloud"
      version = "~> 1.52"
    }
  }
}
