# Archival by rule: one Cloud Scheduler job per var.sweep_rules entry publishes
# a sweep request onto the request topic. The function lists the matching
# series and publishes one request per series (README: action sweep).
#
# A Pub/Sub target publishes as the Cloud Scheduler service agent of this
# project (a Pub/Sub target takes no service account of its own); iam.tf adds
# it to the request topic's publishers. The message carries no follow-up field
# (cursor, published, continuation), so it needs no signature: a scheduler
# cannot sign. It carries no requestId either: each run's is its Pub/Sub
# message id, and every child's is derived from it.

locals {
  scheduler_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-cloudscheduler.iam.gserviceaccount.com"

  sweep_requests = {
    for rule in var.sweep_rules : rule.name => merge(
      {
        action  = "sweep"
        filters = { for key, value in rule.filters : key => value if value != null }
        then = merge(
          { action = rule.then.action },
          rule.then.destination == null ? {} : { destination = rule.then.destination },
          rule.then.options == null ? {} : {
            options = { for key, value in rule.then.options : key => value if value != null }
          },
        )
      },
      rule.store == null ? {} : { store = rule.store },
    )
  }
}

resource "google_cloud_scheduler_job" "sweep" {
  for_each = { for rule in var.sweep_rules : rule.name => rule }

  project     = var.project_id
  region      = var.region
  name        = "${var.name}-sweep-${each.key}"
  description = "Sweep rule ${each.key} of ${var.name}: ${each.value.then.action} every matching series."
  schedule    = each.value.schedule
  time_zone   = each.value.time_zone

  pubsub_target {
    topic_name = google_pubsub_topic.request.id
    data       = base64encode(jsonencode(local.sweep_requests[each.key]))
    attributes = { action = "sweep" }
  }

  depends_on = [google_project_service.apis, google_pubsub_topic_iam_binding.request_publishers]
}
