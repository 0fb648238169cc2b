terraform {
  # 1.5: `check` blocks and lifecycle preconditions used below.
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 8.0"
    }
    archive = {
      source = "hashicorp/archive"
      # 2.5.0 added glob patterns (doublestar `**`) to archive_file `excludes`.
      version = ">= 2.5.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.1"
    }
  }
}
