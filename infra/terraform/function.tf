# The function: source zip, upload, Cloud Run function (2nd gen).

# Zip of the repository root with the same content as a `gcloud functions
# deploy` honouring .gcloudignore: main.py, requirements.txt and worker/.
data "archive_file" "source" {
  type        = "zip"
  source_dir  = local.source_dir
  excludes    = local.source_excludes
  output_path = "${path.root}/.terraform/tmp/${var.name}-source.zip"
  # Fixed mode: the same tree gives the same zip (and object name) on every machine.
  output_file_mode = "0644"
}

resource "google_storage_bucket_object" "source" {
  # Content-addressed name: a code change uploads a new object, which changes
  # build_config and so redeploys the function; an unchanged tree does nothing.
  name         = "${var.name}/source-${data.archive_file.source.output_md5}.zip"
  bucket       = google_storage_bucket.source.name
  source       = data.archive_file.source.output_path
  content_type = "application/zip"
}

locals {
  # The worker's configuration, read from the environment at start-up.
  # Lists are comma-separated.
  module_environment = {
    COMPLETION_TOPIC      = google_pubsub_topic.completion.id
    REQUEST_TOPIC         = google_pubsub_topic.request.id
    DEFAULT_DESTINATION   = local.default_destination
    ALLOWED_BUCKETS       = join(",", sort(tolist(local.allowed_buckets)))
    ALLOWED_DICOM_STORES  = join(",", sort(concat(tolist(local.dicom_store_ids), var.dicomweb_url == null ? [] : ["dicomweb"])))
    DELETE_ENABLED        = var.delete_enabled ? "true" : "false"
    RESTORE_ENABLED       = var.restore_enabled ? "true" : "false"
    MAX_DELIVERY_ATTEMPTS = tostring(var.max_delivery_attempts)
    CONCURRENCY           = tostring(var.worker_concurrency)
    DEADLINE_SECONDS      = tostring(var.deadline_seconds)
    HEALTHCARE_API_URL    = var.healthcare_api_url
    # The keys that sign follow-ups: a file of the mounted secret (secrets.tf), never an env value.
    CONTINUATION_KEYS_FILE = "${local.continuation_keys_dir}/${local.continuation_keys_file}"
    # Not set by Cloud Run functions (2nd gen); the worker links logs to traces with it.
    GOOGLE_CLOUD_PROJECT = var.project_id
  }
  # Defaults that extra_environment_variables may override. The platform adds
  # LOG_EXECUTION_ID=true to 2nd gen functions when it is absent, which would
  # show as a permanent diff: set it explicitly (execution ids in the logs).
  default_environment = {
    LOG_EXECUTION_ID = "true"
  }
  # The module's values win over extra_environment_variables.
  function_environment = merge(
    local.default_environment, var.extra_environment_variables, local.module_environment, local.dicomweb_environment,
  )
}

resource "google_cloudfunctions2_function" "worker" {
  project     = var.project_id
  name        = var.name
  location    = var.region
  description = "DICOM series worker: search, copy, delete or archive one DICOM series per Pub/Sub request."
  labels      = local.labels

  build_config {
    runtime         = "python311"
    entry_point     = "handle_series_request"
    service_account = var.build_service_account

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  # No event_trigger on purpose: the Pub/Sub push subscription in pubsub.tf
  # delivers the requests, so that its retry and dead-letter policies are
  # managed here (an Eventarc-made subscription cannot be). The entry point is
  # decorated with @functions_framework.cloud_event, which takes precedence
  # over the signature type of a trigger-less deployment, and
  # functions-framework turns the Pub/Sub push body into the same CloudEvent
  # (type google.cloud.pubsub.topic.v1.messagePublished) that Eventarc sends.
  service_config {
    # 540 s, the limit of event-driven functions; the worker stops itself at
    # DEADLINE_SECONDS and hands the rest on as a continuation request.
    timeout_seconds                  = var.timeout_seconds
    available_memory                 = var.memory
    available_cpu                    = var.cpu
    max_instance_count               = var.max_instance_count
    min_instance_count               = var.min_instance_count
    max_instance_request_concurrency = 1
    # Only requests from inside the project (Pub/Sub push among them) reach it,
    # and they still need roles/run.invoker (only the push identity has it).
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.runtime.email
    environment_variables          = local.function_environment

    secret_volumes {
      mount_path = local.continuation_keys_dir
      project_id = var.project_id
      secret     = google_secret_manager_secret.continuation_keys.secret_id
      versions {
        # Pinned, not "latest": a new key set is a new version, and so a new
        # revision that reads it at start-up (the worker reads the file once).
        version = google_secret_manager_secret_version.continuation_keys.version
        path    = local.continuation_keys_file
      }
    }

    # The DICOMweb server's password or token (secrets.tf), only with
    # dicomweb_auth basic or bearer: a file, never an environment value.
    dynamic "secret_volumes" {
      for_each = local.dicomweb_secret_enabled ? [var.dicomweb_secret_id] : []
      content {
        mount_path = local.dicomweb_secret_dir
        project_id = var.project_id
        secret     = secret_volumes.value
        versions {
          version = var.dicomweb_secret_version
          path    = local.dicomweb_secret_file
        }
      }
    }
  }

  lifecycle {
    precondition {
      condition     = var.deadline_seconds < var.timeout_seconds
      error_message = "deadline_seconds must be below timeout_seconds so that the worker hands its work on before the platform kills the request."
    }
  }

  depends_on = [
    google_project_service.apis,
    # The first request must not fail for lack of permissions.
    google_healthcare_dicom_store_iam_member.viewer,
    google_healthcare_dicom_store_iam_member.editor,
    google_storage_bucket_iam_member.object_creator,
    google_storage_bucket_iam_member.object_viewer,
    google_pubsub_topic_iam_member.runtime_publisher_completion,
    google_pubsub_topic_iam_binding.request_publishers,
    google_secret_manager_secret_iam_member.runtime_continuation_keys,
    google_secret_manager_secret_iam_member.runtime_dicomweb_secret,
  ]
}
