# Metrics, alerts and a dashboard, from what the platform and the worker's
# JSON log lines already hold (no code of ours runs for them).
#
# The worker writes one `completion event` log line per request
# (worker/delivery.py; fields from CompletionEvent.log_fields: status, action,
# errorCode on failure, instanceCount, bytes, a sweep's published), never a
# UID or a message, so the metrics below carry codes and counts only. Cloud
# Run functions (2nd gen) log as resource.type cloud_run_revision, with the
# function's name as service_name.

locals {
  monitoring_count = var.monitoring_enabled ? 1 : 0
  # Log-based metric names: letters, digits and _ only, so that their PromQL
  # names (logging_googleapis_com:user_<name>) are the same text.
  metric_prefix = replace(var.name, "-", "_")

  completion_log_filter = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=\"${var.name}\"",
    "jsonPayload.message=\"completion event\"",
  ])
}

# --- Log-based metrics ---------------------------------------------------------

# Every completion event, by action, status and error code.
resource "google_logging_metric" "completion_events" {
  count = local.monitoring_count

  project     = var.project_id
  name        = "${local.metric_prefix}_completion_events"
  description = "Completion events of ${var.name}, by action, status and error code (the worker's `completion event` log line)."
  filter      = local.completion_log_filter

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "action"
      value_type  = "STRING"
      description = "search, retrieve, delete, archive, restore, verify, tier, sweep (empty: a message that named none)"
    }
    labels {
      key         = "status"
      value_type  = "STRING"
      description = "succeeded or failed"
    }
    labels {
      key         = "error_code"
      value_type  = "STRING"
      description = "the error code of a failed event (README: failure modes); empty on success"
    }
  }

  label_extractors = {
    action     = "EXTRACT(jsonPayload.action)"
    status     = "EXTRACT(jsonPayload.status)"
    error_code = "EXTRACT(jsonPayload.errorCode)"
  }
}

# Instances of every succeeded request that states a count, by action: a
# distribution, whose sum is the number of instances.
resource "google_logging_metric" "instances" {
  count = local.monitoring_count

  project     = var.project_id
  name        = "${local.metric_prefix}_instances"
  description = "instanceCount of the succeeded completion events of ${var.name}, by action (the sum is instances searched, copied, archived, restored...)."
  filter      = "${local.completion_log_filter} AND jsonPayload.status=\"succeeded\" AND jsonPayload.instanceCount>=0"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "1"
    labels {
      key        = "action"
      value_type = "STRING"
    }
  }
  value_extractor  = "EXTRACT(jsonPayload.instanceCount)"
  label_extractors = { action = "EXTRACT(jsonPayload.action)" }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 20
      growth_factor      = 2
      scale              = 1
    }
  }
}

# Bytes copied (retrieve, archive: what the event's `bytes` counts), by action.
resource "google_logging_metric" "bytes" {
  count = local.monitoring_count

  project     = var.project_id
  name        = "${local.metric_prefix}_bytes"
  description = "bytes of the succeeded completion events of ${var.name}, by action (the sum is the bytes copied to Cloud Storage)."
  filter      = "${local.completion_log_filter} AND jsonPayload.status=\"succeeded\" AND jsonPayload.bytes>=0"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "By"
    labels {
      key        = "action"
      value_type = "STRING"
    }
  }
  value_extractor  = "EXTRACT(jsonPayload.bytes)"
  label_extractors = { action = "EXTRACT(jsonPayload.action)" }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 40
      growth_factor      = 2
      scale              = 1024
    }
  }
}

# A sweep that ended having published no request: its rule matched nothing,
# or its store is not the one meant. Worth a look either way.
resource "google_logging_metric" "empty_sweeps" {
  count = local.monitoring_count

  project     = var.project_id
  name        = "${local.metric_prefix}_empty_sweeps"
  description = "Succeeded sweeps of ${var.name} that published no request."
  filter      = "${local.completion_log_filter} AND jsonPayload.action=\"sweep\" AND jsonPayload.status=\"succeeded\" AND jsonPayload.published=0"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

# --- Alert policies --------------------------------------------------------------

# Requests (or audit events) waiting in a dead-letter subscription: something
# ended without a completion event, or BigQuery refused an event.
resource "google_monitoring_alert_policy" "dead_letter_backlog" {
  count = local.monitoring_count

  project               = var.project_id
  display_name          = "${var.name}: dead-lettered messages waiting"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels

  documentation {
    mime_type = "text/markdown"
    content   = "A message waits in a dead-letter pull subscription of ${var.name}. Requests: `${var.name}-dead-letter-pull` (inspect, fix, republish onto the request topic). Audit events BigQuery refused: `${var.name}-audit-dead-letter-pull`. See the module README, Operations."
  }

  dynamic "conditions" {
    for_each = concat(
      [google_pubsub_subscription.dead_letter.name],
      var.audit_enabled ? [google_pubsub_subscription.audit_dead_letter[0].name] : [],
    )
    content {
      display_name = "undelivered messages in ${conditions.value}"
      condition_threshold {
        filter          = "resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${conditions.value}\" AND metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\""
        comparison      = "COMPARISON_GT"
        threshold_value = 0
        duration        = "0s"
        aggregations {
          alignment_period   = "300s"
          per_series_aligner = "ALIGN_MAX"
        }
      }
    }
  }
}

# The share of completion events that are failures.
resource "google_monitoring_alert_policy" "failed_events" {
  count = local.monitoring_count

  project               = var.project_id
  display_name          = "${var.name}: failed completion events above ${var.alert_failed_event_ratio * 100} %"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels

  documentation {
    mime_type = "text/markdown"
    content   = "More than ${var.alert_failed_event_ratio * 100} % of the completion events of ${var.name} in the last hour are failures. The dashboard shows them by error code; `python -m worker report` or the audit table gives the series."
  }

  conditions {
    display_name = "failed / all completion events, 1 h"
    condition_threshold {
      filter             = "resource.type=\"cloud_run_revision\" AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.completion_events[0].name}\" AND metric.labels.status=\"failed\""
      denominator_filter = "resource.type=\"cloud_run_revision\" AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.completion_events[0].name}\""
      comparison         = "COMPARISON_GT"
      threshold_value    = var.alert_failed_event_ratio
      duration           = "0s"
      aggregations {
        alignment_period     = "3600s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
      denominator_aggregations {
        alignment_period     = "3600s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }
}

# Deliveries the function answered with a 5xx: a RetryableError (Pub/Sub
# redelivers) or a defect. A few are normal (a 429 or 503 of the Healthcare
# API outlasting the worker's own retries); many mean trouble.
resource "google_monitoring_alert_policy" "function_errors" {
  count = local.monitoring_count

  project               = var.project_id
  display_name          = "${var.name}: function errors (5xx)"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels

  documentation {
    mime_type = "text/markdown"
    content   = "The ${var.name} function answered more than ${var.alert_function_errors} deliveries with a 5xx in 10 minutes: each is a redelivery (transient failure) or a defect. Its log lines `transient failure, asking for redelivery` name the reason."
  }

  conditions {
    display_name = "5xx answers, 10 min"
    condition_threshold {
      filter          = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${var.name}\" AND metric.type=\"run.googleapis.com/request_count\" AND metric.labels.response_code_class=\"5xx\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_function_errors
      duration        = "0s"
      aggregations {
        alignment_period     = "600s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }
}

# A sweep that published nothing.
resource "google_monitoring_alert_policy" "empty_sweep" {
  count = local.monitoring_count

  project               = var.project_id
  display_name          = "${var.name}: a sweep published nothing"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels

  documentation {
    mime_type = "text/markdown"
    content   = "A sweep of ${var.name} listed no series: its rule (sweep_rules) matched nothing in its store. A sweep that failed shows among the failed events instead."
  }

  conditions {
    display_name = "sweeps that published nothing"
    condition_threshold {
      filter          = "resource.type=\"cloud_run_revision\" AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.empty_sweeps[0].name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "3600s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }
}

# The oldest request waiting on the push subscription: past the subscription's
# retention (7 days) Pub/Sub drops it with no dead letter and no event, so
# warn well before (README: Scaling, Pub/Sub backlog).
resource "google_monitoring_alert_policy" "request_backlog_age" {
  count = local.monitoring_count

  project               = var.project_id
  display_name          = "${var.name}: a request has waited over ${var.alert_backlog_age_hours} h"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels

  documentation {
    mime_type = "text/markdown"
    content   = "The oldest request on `${var.name}-push` has waited more than ${var.alert_backlog_age_hours} hours; after 7 days Pub/Sub drops it without an event. Sweep in smaller slices, raise max_instance_count within the Healthcare API quota, or raise the quota."
  }

  conditions {
    display_name = "oldest unacknowledged request"
    condition_threshold {
      filter          = "resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${google_pubsub_subscription.push.name}\" AND metric.type=\"pubsub.googleapis.com/subscription/oldest_unacked_message_age\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_backlog_age_hours * 3600
      duration        = "0s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }
}

# --- Dashboard -------------------------------------------------------------------

resource "google_monitoring_dashboard" "worker" {
  count = local.monitoring_count

  project = var.project_id
  dashboard_json = templatefile("${path.module}/dashboard.json.tftpl", {
    name                   = var.name
    events_metric          = google_logging_metric.completion_events[0].name
    instances_metric       = google_logging_metric.instances[0].name
    bytes_metric           = google_logging_metric.bytes[0].name
    empty_sweeps_metric    = google_logging_metric.empty_sweeps[0].name
    push_subscription      = google_pubsub_subscription.push.name
    dead_letter_pull       = google_pubsub_subscription.dead_letter.name
    audit_dead_letter_pull = var.audit_enabled ? google_pubsub_subscription.audit_dead_letter[0].name : ""
    dead_letter_alert      = google_monitoring_alert_policy.dead_letter_backlog[0].name
    failed_events_alert    = google_monitoring_alert_policy.failed_events[0].name
    function_errors_alert  = google_monitoring_alert_policy.function_errors[0].name
    empty_sweep_alert      = google_monitoring_alert_policy.empty_sweep[0].name
    backlog_age_alert      = google_monitoring_alert_policy.request_backlog_age[0].name
  })
}
