# DICOM series worker: a Cloud Run function (2nd gen) fed by a Pub/Sub push
# subscription with retries and a dead-letter topic.
#
# Files: main.tf (locals, APIs, service accounts), pubsub.tf, function.tf,
# storage.tf, iam.tf, secrets.tf, scheduler.tf, audit.tf, monitoring.tf,
# outputs.tf. Design notes in README.md.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  labels = merge({ app = "dicom-series-worker", managed-by = "terraform" }, var.labels)

  # --- identities ----------------------------------------------------------
  runtime_sa_id = coalesce(var.runtime_service_account_id, "${substr(var.name, 0, 26)}-run")
  invoker_sa_id = coalesce(var.invoker_service_account_id, "${substr(var.name, 0, 25)}-push")

  # Google-managed service agent that delivers pushes and dead-letters messages.
  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  # --- DICOM stores ----------------------------------------------------------
  dicom_store_ids = toset(var.dicom_store_ids)
  # projects/P/locations/L/datasets/D of each store: long-running operations
  # (DeleteSeries) live at the dataset level.
  dicom_datasets = toset([
    for id in var.dicom_store_ids : regex("^(projects/[^/]+/locations/[^/]+/datasets/[^/]+)/dicomStores/", id)[0]
  ])
  dicom_store_projects = toset([for id in var.dicom_store_ids : split("/", id)[1]])

  # --- buckets ---------------------------------------------------------------
  bucket_location         = coalesce(var.bucket_location, upper(var.region))
  destination_bucket_name = coalesce(var.destination_bucket_name, "${var.project_id}-dicom-archive")
  allowed_buckets         = toset(distinct(concat([local.destination_bucket_name], var.additional_allowed_buckets)))
  default_destination = (
    var.destination_prefix == ""
    ? "gs://${local.destination_bucket_name}"
    : "gs://${local.destination_bucket_name}/${var.destination_prefix}"
  )
  source_bucket_name = coalesce(var.source_bucket_name, "${var.project_id}-${var.name}-src")

  # --- source archive ----------------------------------------------------------
  source_dir = coalesce(var.source_dir, "${path.module}/../..")
  # The function ships main.py, requirements.txt and worker/ only: every other
  # top-level file is excluded here, every other directory by source_excludes.
  shipped_top_level_files = ["main.py", "requirements.txt"]
  source_excludes = sort(distinct(concat(
    var.source_excludes,
    [for f in fileset(local.source_dir, "*") : f if !contains(local.shipped_top_level_files, f)],
  )))

  # --- APIs ------------------------------------------------------------------
  apis = toset(concat(
    [
      "artifactregistry.googleapis.com",
      "cloudbuild.googleapis.com",
      "cloudfunctions.googleapis.com",
      "healthcare.googleapis.com",
      "iam.googleapis.com",
      "pubsub.googleapis.com",
      "run.googleapis.com",
      "secretmanager.googleapis.com",
      "storage.googleapis.com",
    ],
    var.kms_key_name == null ? [] : ["cloudkms.googleapis.com"],
    length(var.sweep_rules) == 0 ? [] : ["cloudscheduler.googleapis.com"],
    var.audit_enabled ? ["bigquery.googleapis.com"] : [],
    var.monitoring_enabled ? ["logging.googleapis.com", "monitoring.googleapis.com"] : [],
  ))
}

resource "google_project_service" "apis" {
  for_each = var.enable_apis ? local.apis : toset([])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# The identity the function runs as. Every grant it holds is resource-level
# (stores, datasets, buckets, topics): see iam.tf.
resource "google_service_account" "runtime" {
  project      = var.project_id
  account_id   = local.runtime_sa_id
  display_name = "DICOM series worker (${var.name}) runtime"
  description  = "Runs the ${var.name} function: reads (and, if enabled, deletes) DICOM series, writes the archive bucket, publishes completion and continuation events."

  depends_on = [google_project_service.apis]
}

# The identity of the Pub/Sub push: Pub/Sub signs an OIDC token for it on every
# delivery; it holds roles/run.invoker on this function's service and nothing else.
resource "google_service_account" "invoker" {
  project      = var.project_id
  account_id   = local.invoker_sa_id
  display_name = "DICOM series worker (${var.name}) push invoker"
  description  = "Identity of the Pub/Sub push subscription ${var.name}-push; may only invoke the ${var.name} function."

  depends_on = [google_project_service.apis]
}
