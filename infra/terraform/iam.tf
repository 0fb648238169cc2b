# Least privilege: every grant is on one resource (store, dataset, bucket,
# topic, subscription, service, service account, key), never on the project.
# Roles are literal strings so that tests/infra/test_terraform.py can check
# them against its allowlist.

locals {
  runtime_member = "serviceAccount:${google_service_account.runtime.email}"
  invoker_member = "serviceAccount:${google_service_account.invoker.email}"
}

# --- Cloud Healthcare API ------------------------------------------------------

# Search (QIDO-RS) and retrieve (WADO-RS): healthcare.dicomStores.dicomWebRead.
resource "google_healthcare_dicom_store_iam_member" "viewer" {
  for_each = local.dicom_store_ids

  dicom_store_id = each.value
  role           = "roles/healthcare.dicomViewer"
  member         = local.runtime_member
}

# DeleteSeries (healthcare.dicomStores.dicomWebDelete) only when deletion is
# enabled, STOW-RS (dicomWebWrite) only when restore is, setBlobStorageSettings
# (dicomWebWrite too) only when tiering is. dicomEditor is the narrowest
# predefined role holding them; it also holds healthcare.operations.get
# (see grant below and README).
resource "google_healthcare_dicom_store_iam_member" "editor" {
  for_each = (var.delete_enabled || var.restore_enabled || var.tier_enabled) && var.grant_dicom_editor ? local.dicom_store_ids : toset([])

  dicom_store_id = each.value
  role           = "roles/healthcare.dicomEditor"
  member         = local.runtime_member
}

# Polling the DeleteSeries operation: GET .../datasets/D/operations/N needs
# healthcare.operations.get on the dataset that owns the operation.
# datasetViewer is metadata only (datasets.get/list, locations, operations.get):
# it gives no access to any DICOM, FHIR or HL7v2 data.
resource "google_healthcare_dataset_iam_member" "operations_viewer" {
  for_each = var.delete_enabled && var.grant_dataset_operations_viewer ? local.dicom_datasets : toset([])

  dataset_id = each.value
  role       = "roles/healthcare.datasetViewer"
  member     = local.runtime_member
}

# --- Cloud Storage ------------------------------------------------------------------

# Create-only writes (if_generation_match=0): objectCreator. No overwrite, no
# delete, no bucket administration.
resource "google_storage_bucket_iam_member" "object_creator" {
  for_each = local.allowed_buckets

  bucket = each.value
  role   = "roles/storage.objectCreator"
  member = local.runtime_member

  lifecycle {
    precondition {
      condition     = var.create_destination_bucket || var.destination_bucket_name != null
      error_message = "destination_bucket_name is required when create_destination_bucket is false."
    }
  }

  depends_on = [google_storage_bucket.destination]
}

# Verification of an archive (list and read back what was written).
resource "google_storage_bucket_iam_member" "object_viewer" {
  for_each = local.allowed_buckets

  bucket = each.value
  role   = "roles/storage.objectViewer"
  member = local.runtime_member

  depends_on = [google_storage_bucket.destination]
}

# Restore by import: the Healthcare service agent reads the archive objects it
# imports; tier: it reads the filter file setBlobStorageSettings names. One grant
# when either restore_import_enabled or tier_enabled; read only, never write.
resource "google_storage_bucket_iam_member" "healthcare_agent_import_reader" {
  for_each = var.restore_import_enabled || var.tier_enabled ? {
    for pair in setproduct(tolist(local.allowed_buckets), tolist(local.dicom_store_projects)) :
    "${pair[0]}/${pair[1]}" => { bucket = pair[0], project = pair[1] }
  } : {}

  bucket = each.value.bucket
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:service-${data.google_project.import_agent[each.value.project].number}@gcp-sa-healthcare.iam.gserviceaccount.com"

  depends_on = [google_storage_bucket.destination]
}

data "google_project" "import_agent" {
  for_each = var.restore_import_enabled || var.tier_enabled ? local.dicom_store_projects : toset([])

  project_id = each.value
}

# --- Pub/Sub: the worker ---------------------------------------------------------

resource "google_pubsub_topic_iam_member" "runtime_publisher_completion" {
  project = var.project_id
  topic   = google_pubsub_topic.completion.name
  role    = "roles/pubsub.publisher"
  member  = local.runtime_member
}

# Who may publish onto the request topic, and no one else: authoritative for
# the publisher role on this module's own topic (a publisher granted on the
# topic elsewhere is removed). The function hands its follow-ups on here;
# var.request_publishers send new requests; with store notifications, the
# Healthcare service agent of each store's project publishes them; with
# sweep_rules, the Cloud Scheduler service agent publishes the sweeps. Project-level
# grants still reach the topic: the worker therefore also refuses follow-up
# fields that lack its signature (secrets.tf), whoever publishes them.
resource "google_pubsub_topic_iam_binding" "request_publishers" {
  project = var.project_id
  topic   = google_pubsub_topic.request.name
  role    = "roles/pubsub.publisher"
  members = sort(distinct(concat(
    [local.runtime_member],
    var.request_publishers,
    [for project in data.google_project.dicom_store : "serviceAccount:service-${project.number}@gcp-sa-healthcare.iam.gserviceaccount.com"],
    length(var.sweep_rules) == 0 ? [] : [local.scheduler_service_agent],
  )))
}

# --- Pub/Sub: push delivery ------------------------------------------------------

# The push identity may invoke this function's Cloud Run service, nothing else.
resource "google_cloud_run_v2_service_iam_member" "push_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.worker.name
  role     = "roles/run.invoker"
  member   = local.invoker_member
}

# The Pub/Sub service agent mints the OIDC token of each push for the invoker
# account. Scoped to that one account (not the project).
resource "google_service_account_iam_member" "pubsub_token_creator" {
  count = var.grant_token_creator_to_pubsub_agent ? 1 : 0

  service_account_id = google_service_account.invoker.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent

  depends_on = [google_project_service.apis]
}

# --- Pub/Sub: dead-lettering ----------------------------------------------------------
# Both grants are required, or Pub/Sub silently keeps retrying instead of
# forwarding to the dead-letter topic.

resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  project      = var.project_id
  subscription = google_pubsub_subscription.push.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# --- Audit trail: the BigQuery subscription (audit.tf) ------------------------------

# The Pub/Sub service agent writes the rows: dataEditor on the audit table
# alone (not the dataset, not the project), which is all a BigQuery
# subscription needs (tables.get to check the schema, tables.updateData).
resource "google_bigquery_table_iam_member" "audit_writer" {
  count = local.audit_count

  project    = var.project_id
  dataset_id = google_bigquery_table.audit_events[0].dataset_id
  table_id   = google_bigquery_table.audit_events[0].table_id
  role       = "roles/bigquery.dataEditor"
  member     = local.pubsub_service_agent
}

# Dead-lettering an event BigQuery refused: the same two grants as for the
# push subscription, on the audit subscription and its own dead-letter topic.
resource "google_pubsub_topic_iam_member" "audit_dead_letter_publisher" {
  count = local.audit_count

  project = var.project_id
  topic   = google_pubsub_topic.audit_dead_letter[0].name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "audit_dead_letter_subscriber" {
  count = local.audit_count

  project      = var.project_id
  subscription = google_pubsub_subscription.audit[0].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# --- Optional: DICOM store notifications onto the request topic ---------------------

# The Healthcare service agents of the stores' projects join the request
# topic's publishers (google_pubsub_topic_iam_binding.request_publishers).
data "google_project" "dicom_store" {
  for_each = var.dicom_store_notifications_publisher ? local.dicom_store_projects : toset([])

  project_id = each.value
}

# --- Optional: customer-managed encryption key ---------------------------------------

data "google_storage_project_service_account" "this" {
  count = var.kms_key_name != null && var.grant_kms_to_service_agents && var.create_destination_bucket ? 1 : 0

  project = var.project_id
}

resource "google_kms_crypto_key_iam_member" "pubsub_agent" {
  count = var.kms_key_name != null && var.grant_kms_to_service_agents ? 1 : 0

  crypto_key_id = var.kms_key_name
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = local.pubsub_service_agent

  depends_on = [google_project_service.apis]
}

# BigQuery encrypts the audit dataset with audit_kms_key_name through its own
# service agent (bq-PROJECT_NUMBER@bigquery-encryption.iam.gserviceaccount.com).
data "google_bigquery_default_service_account" "this" {
  count = var.audit_enabled && var.audit_kms_key_name != null && var.grant_kms_to_service_agents ? 1 : 0

  project = var.project_id
}

resource "google_kms_crypto_key_iam_member" "bigquery_agent" {
  count = length(data.google_bigquery_default_service_account.this)

  crypto_key_id = var.audit_kms_key_name
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:${data.google_bigquery_default_service_account.this[0].email}"
}

resource "google_kms_crypto_key_iam_member" "storage_agent" {
  count = length(data.google_storage_project_service_account.this)

  crypto_key_id = var.kms_key_name
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:${data.google_storage_project_service_account.this[0].email_address}"
}
