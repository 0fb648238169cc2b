output "function_name" {
  description = "Name of the Cloud Run function (and of its Cloud Run service)."
  value       = google_cloudfunctions2_function.worker.name
}

output "function_id" {
  description = "Full resource id of the function."
  value       = google_cloudfunctions2_function.worker.id
}

output "function_uri" {
  description = "URL of the function's Cloud Run service (the push endpoint's base; reachable only from inside the project)."
  value       = google_cloudfunctions2_function.worker.service_config[0].uri
}

output "request_topic_id" {
  description = "Full id (projects/P/topics/T) of the request topic: publish series requests here."
  value       = google_pubsub_topic.request.id
}

output "completion_topic_id" {
  description = "Full id of the completion topic; subscribe here to learn the outcome of each request."
  value       = google_pubsub_topic.completion.id
}

output "dead_letter_topic_id" {
  description = "Full id of the dead-letter topic."
  value       = google_pubsub_topic.dead_letter.id
}

output "push_subscription_id" {
  description = "Full id of the push subscription that delivers requests to the function."
  value       = google_pubsub_subscription.push.id
}

output "dead_letter_subscription_id" {
  description = "Full id of the pull subscription holding dead-lettered requests."
  value       = google_pubsub_subscription.dead_letter.id
}

output "service_account_email" {
  description = "Email of the service account the function runs as."
  value       = google_service_account.runtime.email
}

output "invoker_service_account_email" {
  description = "Email of the service account Pub/Sub uses to sign push requests."
  value       = google_service_account.invoker.email
}

output "bucket_name" {
  description = "Destination bucket (created or existing)."
  value       = var.create_destination_bucket ? google_storage_bucket.destination[0].name : local.destination_bucket_name
}

output "default_destination" {
  description = "DEFAULT_DESTINATION given to the function (gs://bucket/prefix)."
  value       = local.default_destination
}

output "source_bucket_name" {
  description = "Bucket holding the zipped function source."
  value       = google_storage_bucket.source.name
}

output "source_archive_md5" {
  description = "MD5 of the deployed source zip (changes when main.py, requirements.txt or worker/ change)."
  value       = data.archive_file.source.output_md5
}

output "audit_table_id" {
  description = "The audit table, PROJECT.DATASET.TABLE (one row per completion event); null when audit_enabled is false."
  value       = var.audit_enabled ? "${google_bigquery_table.audit_events[0].project}.${google_bigquery_table.audit_events[0].dataset_id}.${google_bigquery_table.audit_events[0].table_id}" : null
}

output "audit_dead_letter_subscription_id" {
  description = "Full id of the pull subscription holding completion events BigQuery refused; null when audit_enabled is false."
  value       = var.audit_enabled ? google_pubsub_subscription.audit_dead_letter[0].id : null
}

output "dashboard_id" {
  description = "Id of the Cloud Monitoring dashboard (projects/P/dashboards/ID); null when monitoring_enabled is false."
  value       = var.monitoring_enabled ? google_monitoring_dashboard.worker[0].id : null
}
