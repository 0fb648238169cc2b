# Minimal use of the module: deploy the worker from this repository against
# one existing DICOM store, deletion enabled, archive class after 90 days.
#
#   cd infra/terraform/examples/basic
#   terraform init
#   terraform apply -var project_id=my-project \
#     -var dicom_store_id=projects/my-project/locations/europe-west4/datasets/imaging/dicomStores/archive

terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 8.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.5.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.1"
    }
  }
}

variable "project_id" {
  description = "Project to deploy into."
  type        = string
}

variable "region" {
  description = "Region of the function and buckets; keep it the DICOM store's region."
  type        = string
  default     = "europe-west4"
}

variable "dicom_store_id" {
  description = "Existing DICOM store, projects/P/locations/L/datasets/D/dicomStores/S."
  type        = string
}

variable "request_publishers" {
  description = "Who may publish requests, e.g. [\"serviceAccount:producer@my-project.iam.gserviceaccount.com\"]."
  type        = list(string)
  default     = []
}

provider "google" {
  project = var.project_id
  region  = var.region
}

module "dicom_series_worker" {
  source = "../.."

  project_id      = var.project_id
  region          = var.region
  dicom_store_ids = [var.dicom_store_id]

  request_publishers = var.request_publishers

  delete_enabled            = true
  bucket_archive_after_days = 90
  max_instance_count        = 5
  max_delivery_attempts     = 10

  labels = {
    env = "example"
  }
}

output "request_topic_id" {
  description = "Publish series requests here."
  value       = module.dicom_series_worker.request_topic_id
}

output "completion_topic_id" {
  description = "Completion events arrive here."
  value       = module.dicom_series_worker.completion_topic_id
}

output "dead_letter_subscription_id" {
  description = "Pull dead-lettered requests from here."
  value       = module.dicom_series_worker.dead_letter_subscription_id
}

output "function_uri" {
  description = "URL of the function (internal ingress only)."
  value       = module.dicom_series_worker.function_uri
}

output "bucket_name" {
  description = "Destination bucket."
  value       = module.dicom_series_worker.bucket_name
}

output "service_account_email" {
  description = "Runtime service account of the function."
  value       = module.dicom_series_worker.service_account_email
}
