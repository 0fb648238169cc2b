# Buckets: the destination of copies and archives, and the function source.

resource "google_storage_bucket" "destination" {
  # checkov:skip=CKV_GCP_62: usage (access) logs are opt-in through var.access_log_bucket; Cloud Audit Logs (Data Access) are the recommended record of object access. Checkov cannot resolve the null default and would pass it vacuously.
  count = var.create_destination_bucket ? 1 : 0

  project  = var.project_id
  name     = local.destination_bucket_name
  location = local.bucket_location
  labels   = local.labels

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  # Archived DICOM may be the only copy left once the series is deleted from
  # the store: never let `terraform destroy` empty the bucket.
  force_destroy = false

  versioning {
    enabled = var.bucket_versioning
  }

  dynamic "lifecycle_rule" {
    for_each = var.bucket_archive_after_days == null ? [] : [var.bucket_archive_after_days]
    content {
      action {
        type          = "SetStorageClass"
        storage_class = "ARCHIVE"
      }
      condition {
        age                   = lifecycle_rule.value
        matches_storage_class = ["STANDARD", "NEARLINE", "COLDLINE"]
      }
    }
  }

  dynamic "lifecycle_rule" {
    for_each = var.bucket_noncurrent_versions_delete_after_days == null ? [] : [var.bucket_noncurrent_versions_delete_after_days]
    content {
      action {
        type = "Delete"
      }
      condition {
        days_since_noncurrent_time = lifecycle_rule.value
        with_state                 = "ARCHIVED"
      }
    }
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  dynamic "logging" {
    for_each = var.access_log_bucket == null ? [] : [var.access_log_bucket]
    content {
      log_bucket        = logging.value
      log_object_prefix = local.destination_bucket_name
    }
  }

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.storage_agent]
}

# Holds the zipped function source (code only, no patient data). Object names
# are content hashes, so old sources pile up as live objects: they are small,
# and keeping them lets a rebuild of an older revision find its source.
resource "google_storage_bucket" "source" {
  # checkov:skip=CKV_GCP_62: holds build inputs only (code, no patient data); usage logs are opt-in through var.access_log_bucket.
  project  = var.project_id
  name     = local.source_bucket_name
  location = local.bucket_location
  labels   = local.labels

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  # Only rebuildable build inputs live here.
  force_destroy = true

  versioning {
    enabled = var.bucket_versioning
  }

  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      days_since_noncurrent_time = 30
      with_state                 = "ARCHIVED"
    }
  }

  dynamic "logging" {
    for_each = var.access_log_bucket == null ? [] : [var.access_log_bucket]
    content {
      log_bucket        = logging.value
      log_object_prefix = local.source_bucket_name
    }
  }

  lifecycle {
    precondition {
      condition     = length(local.source_bucket_name) <= 63
      error_message = "The derived source bucket name is longer than 63 characters: set source_bucket_name."
    }
  }

  depends_on = [google_project_service.apis]
}
