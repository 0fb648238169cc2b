# The audit trail: every completion event as a row of a BigQuery table,
# written by a BigQuery subscription on the completion topic (no code of ours).
#
# The table's columns are the event's fields (use_table_schema) followed by
# the message metadata (write_metadata: subscription_name, message_id,
# publish_time, attributes). Its schema is audit_table_schema.json, generated
# from schemas/event.schema.json by audit_schema.py; a test fails when the two
# differ. drop_unknown_fields is off: an event the table cannot hold (a field
# it lacks, a missing required field) is never written truncated; after
# max_delivery_attempts it goes to the audit dead-letter topic, whose pull
# subscription keeps it for an operator (and whose backlog raises an alert,
# monitoring.tf). These dead letters are events, to be loaded into BigQuery
# once fixed, not requests to republish: hence a topic apart from the
# request dead-letter topic.
#
# Delivery is at least once: a row may repeat; message_id tells repeats apart
# (the README's queries count DISTINCT requestId).

locals {
  audit_count      = var.audit_enabled ? 1 : 0
  audit_dataset_id = coalesce(var.audit_dataset_id, "${replace(var.name, "-", "_")}_audit")
  audit_location   = coalesce(var.audit_location, var.region)
}

resource "google_bigquery_dataset" "audit" {
  # checkov:skip=CKV_GCP_81: CMEK is the deployer's choice through var.audit_kms_key_name (null = Google-managed keys); checkov cannot resolve the null default.
  count = local.audit_count

  project                    = var.project_id
  dataset_id                 = local.audit_dataset_id
  location                   = local.audit_location
  friendly_name              = "${var.name} audit trail"
  description                = "Completion events of the ${var.name} DICOM series worker, one row per event (BigQuery subscription ${var.name}-audit)."
  labels                     = local.labels
  delete_contents_on_destroy = false

  dynamic "default_encryption_configuration" {
    for_each = var.audit_kms_key_name == null ? [] : [var.audit_kms_key_name]
    content {
      kms_key_name = default_encryption_configuration.value
    }
  }

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.bigquery_agent]
}

resource "google_bigquery_table" "audit_events" {
  # checkov:skip=CKV_GCP_80: CMEK is the deployer's choice through var.audit_kms_key_name (null = Google-managed keys); checkov cannot resolve the null default.
  count = local.audit_count

  project     = var.project_id
  dataset_id  = google_bigquery_dataset.audit[0].dataset_id
  table_id    = "completion_events"
  description = "One row per completion event (schemas/event.schema.json), partitioned by the day it was published."
  labels      = local.labels

  # An audit trail: Terraform refuses to destroy (or replace) it.
  deletion_protection = true

  schema = file("${path.module}/audit_table_schema.json")

  time_partitioning {
    type          = "DAY"
    field         = "publish_time"
    expiration_ms = var.audit_retention_days == null ? null : var.audit_retention_days * 86400000
  }
  clustering = ["action", "status"]

  dynamic "encryption_configuration" {
    for_each = var.audit_kms_key_name == null ? [] : [var.audit_kms_key_name]
    content {
      kms_key_name = encryption_configuration.value
    }
  }
}

resource "google_pubsub_topic" "audit_dead_letter" {
  # checkov:skip=CKV_GCP_83: CMEK is the deployer's choice through var.kms_key_name (null = Google-managed keys); checkov passes it vacuously because it cannot resolve the null default.
  count = local.audit_count

  project                    = var.project_id
  name                       = "${var.name}-audit-dead-letter"
  labels                     = local.labels
  kms_key_name               = var.kms_key_name
  message_retention_duration = var.dead_letter_retention

  dynamic "message_storage_policy" {
    for_each = length(local.message_storage_regions) > 0 ? [local.message_storage_regions] : []
    content {
      allowed_persistence_regions = message_storage_policy.value
    }
  }

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.pubsub_agent]
}

# Events BigQuery refused wait here (7 days by default) for an operator.
resource "google_pubsub_subscription" "audit_dead_letter" {
  count = local.audit_count

  project = var.project_id
  name    = "${var.name}-audit-dead-letter-pull"
  topic   = google_pubsub_topic.audit_dead_letter[0].id
  labels  = local.labels

  ack_deadline_seconds       = 60
  message_retention_duration = var.dead_letter_retention
  retain_acked_messages      = false

  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_subscription" "audit" {
  count = local.audit_count

  project = var.project_id
  name    = "${var.name}-audit"
  topic   = google_pubsub_topic.completion.id
  labels  = local.labels

  message_retention_duration = local.subscription_retention

  expiration_policy {
    ttl = ""
  }

  bigquery_config {
    table               = "${google_bigquery_table.audit_events[0].project}.${google_bigquery_table.audit_events[0].dataset_id}.${google_bigquery_table.audit_events[0].table_id}"
    use_table_schema    = true
    write_metadata      = true
    drop_unknown_fields = false
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.audit_dead_letter[0].id
    max_delivery_attempts = var.max_delivery_attempts
  }

  depends_on = [
    google_bigquery_table_iam_member.audit_writer,
    google_pubsub_topic_iam_member.audit_dead_letter_publisher,
  ]
}
