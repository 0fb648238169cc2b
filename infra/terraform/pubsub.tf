# Topics, the push subscription that drives the function, and dead-lettering.
#
# WHY A PUSH SUBSCRIPTION AND NOT `event_trigger`
# A Pub/Sub `event_trigger` on google_cloudfunctions2_function makes Eventarc
# create and own the subscription; Terraform can neither address it nor set its
# dead-letter policy (hashicorp/terraform-provider-google issues #25069 and
# #17697, open), and google_eventarc_trigger has the same limit. The usual
# workaround, a null_resource running `gcloud pubsub subscriptions update
# --dead-letter-topic` after each deploy, is not declarative, drifts when the
# function is redeployed and cannot be checked offline. So the function is
# deployed without a trigger and this module declares the subscription itself:
# a push subscription to the function's URL with an OIDC token, which is what
# Eventarc builds under the hood (same retry window semantics, same
# CloudEvent once functions-framework converts the push body), with the retry
# policy and dead-letter policy under Terraform's control.

locals {
  message_storage_regions = var.pubsub_allowed_persistence_regions

  # Pub/Sub keeps unacknowledged messages of a subscription at most 7 days.
  subscription_retention = "604800s"
}

resource "google_pubsub_topic" "request" {
  # checkov:skip=CKV_GCP_83: CMEK is the deployer's choice through var.kms_key_name (null = Google-managed keys); checkov passes it vacuously because it cannot resolve the null default.
  project                    = var.project_id
  name                       = "${var.name}-requests"
  labels                     = local.labels
  kms_key_name               = var.kms_key_name
  message_retention_duration = var.topic_message_retention

  dynamic "message_storage_policy" {
    for_each = length(local.message_storage_regions) > 0 ? [local.message_storage_regions] : []
    content {
      allowed_persistence_regions = message_storage_policy.value
    }
  }

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.pubsub_agent]
}

resource "google_pubsub_topic" "completion" {
  # checkov:skip=CKV_GCP_83: CMEK is the deployer's choice through var.kms_key_name (null = Google-managed keys); checkov passes it vacuously because it cannot resolve the null default.
  project                    = var.project_id
  name                       = "${var.name}-completions"
  labels                     = local.labels
  kms_key_name               = var.kms_key_name
  message_retention_duration = var.topic_message_retention

  dynamic "message_storage_policy" {
    for_each = length(local.message_storage_regions) > 0 ? [local.message_storage_regions] : []
    content {
      allowed_persistence_regions = message_storage_policy.value
    }
  }

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.pubsub_agent]
}

resource "google_pubsub_topic" "dead_letter" {
  # checkov:skip=CKV_GCP_83: CMEK is the deployer's choice through var.kms_key_name (null = Google-managed keys); checkov passes it vacuously because it cannot resolve the null default.
  project                    = var.project_id
  name                       = "${var.name}-dead-letter"
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

# The subscription that drives the function (replaces an Eventarc trigger).
resource "google_pubsub_subscription" "push" {
  project = var.project_id
  name    = "${var.name}-push"
  topic   = google_pubsub_topic.request.id
  labels  = local.labels

  # Pub/Sub waits this long for the function's answer before it redelivers:
  # the maximum, above the function's timeout_seconds (<= 540).
  ack_deadline_seconds       = 600
  message_retention_duration = local.subscription_retention
  retain_acked_messages      = false

  # Never delete the subscription for inactivity.
  expiration_policy {
    ttl = ""
  }

  push_config {
    # The path carries projects/P/topics/T so that functions-framework gives the
    # converted CloudEvent the source //pubsub.googleapis.com/projects/P/topics/T,
    # as an Eventarc trigger would; functions-framework serves every path.
    push_endpoint = "${google_cloudfunctions2_function.worker.service_config[0].uri}/${google_pubsub_topic.request.id}"

    oidc_token {
      service_account_email = google_service_account.invoker.email
      # Cloud Run checks the audience against the service URL, not the path.
      audience = google_cloudfunctions2_function.worker.service_config[0].uri
    }
  }

  # A non-2xx answer (exception: 500, timeout: 504, malformed: 400) is a nack:
  # redelivery with exponential backoff, as Eventarc's RETRY_POLICY_RETRY does.
  retry_policy {
    minimum_backoff = var.retry_minimum_backoff
    maximum_backoff = var.retry_maximum_backoff
  }

  # After max_delivery_attempts the request goes to the dead-letter topic
  # instead of being retried until it expires.
  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  lifecycle {
    precondition {
      condition     = tonumber(trimsuffix(var.retry_minimum_backoff, "s")) <= tonumber(trimsuffix(var.retry_maximum_backoff, "s"))
      error_message = "retry_minimum_backoff must not exceed retry_maximum_backoff."
    }
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.push_invoker,
    google_pubsub_topic_iam_member.dead_letter_publisher,
    google_service_account_iam_member.pubsub_token_creator,
  ]
}

# Nothing is lost: dead-lettered requests wait here (7 days by default) for an
# operator to inspect, fix and republish them onto the request topic.
resource "google_pubsub_subscription" "dead_letter" {
  project = var.project_id
  name    = "${var.name}-dead-letter-pull"
  topic   = google_pubsub_topic.dead_letter.id
  labels  = local.labels

  ack_deadline_seconds       = 60
  message_retention_duration = var.dead_letter_retention
  retain_acked_messages      = false

  expiration_policy {
    ttl = ""
  }
}
