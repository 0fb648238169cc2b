# ---------------------------------------------------------------------------
# Where
# ---------------------------------------------------------------------------

variable "project_id" {
  description = "Project that hosts the function, the topics, the subscriptions, the service accounts and the buckets."
  type        = string

  validation {
    condition     = can(regex("^[a-z][-a-z0-9]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project id (6 to 30 lowercase letters, digits or hyphens, starting with a letter)."
  }
}

variable "region" {
  description = "Region of the function (and default location of the buckets), e.g. europe-west4. Keep it the region of the DICOM stores to avoid cross-region egress."
  type        = string

  validation {
    condition     = length(trimspace(var.region)) > 0 && can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a non-empty Google Cloud region name such as europe-west4 or us-central1."
  }
}

variable "name" {
  description = "Name of the function (and of the Cloud Run service behind it); also the prefix of the topics and subscriptions."
  type        = string
  default     = "dicom-series-worker"

  validation {
    condition     = can(regex("^[a-z][-a-z0-9]{0,47}[a-z0-9]$", var.name))
    error_message = "name must be 2 to 49 lowercase letters, digits or hyphens, start with a letter and not end with a hyphen."
  }
}

variable "runtime_service_account_id" {
  description = "account_id of the service account the function runs as. null = \"<name>-run\" (name truncated to fit 30 characters)."
  type        = string
  default     = null

  validation {
    condition     = var.runtime_service_account_id == null ? true : can(regex("^[a-z][-a-z0-9]{4,28}[a-z0-9]$", var.runtime_service_account_id))
    error_message = "runtime_service_account_id must be 6 to 30 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "invoker_service_account_id" {
  description = "account_id of the service account whose OIDC token Pub/Sub attaches to each push (it may only invoke this function). null = \"<name>-push\"."
  type        = string
  default     = null

  validation {
    condition     = var.invoker_service_account_id == null ? true : can(regex("^[a-z][-a-z0-9]{4,28}[a-z0-9]$", var.invoker_service_account_id))
    error_message = "invoker_service_account_id must be 6 to 30 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "labels" {
  description = "Labels put on every labelled resource (function, topics, subscriptions, buckets)."
  type        = map(string)
  default     = {}
}

variable "enable_apis" {
  description = "Enable the APIs the module needs (Cloud Functions, Cloud Run, Cloud Build, Artifact Registry, Pub/Sub, Cloud Storage, Cloud Healthcare, IAM). Set false where APIs are managed elsewhere. APIs are never disabled on destroy."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------
# Source and build
# ---------------------------------------------------------------------------

variable "source_dir" {
  description = "Directory zipped as the function source. null = the repository root (two levels above this module). Only main.py, requirements.txt and worker/ are shipped (see source_excludes)."
  type        = string
  default     = null
}

variable "source_excludes" {
  description = "Paths excluded from the source zip, relative to source_dir, glob patterns allowed (archive provider >= 2.5). Mirrors .gcloudignore. Top-level files other than main.py and requirements.txt are always excluded in addition."
  type        = list(string)
  default = [
    ".git",
    ".github",
    ".ci",
    ".venv",
    ".local",
    ".terraform",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "tests",
    "infra",
    "bench",
    "schemas",
    "docs",
    "**/__pycache__",
    "**/*.pyc",
    "**/.terraform",
    "worker/cli",
    "worker/__main__.py",
    "**/*.tfstate*",
  ]
}

variable "source_bucket_name" {
  description = "Name of the bucket created for the zipped function source. null = \"<project_id>-<name>-src\"."
  type        = string
  default     = null

  validation {
    condition     = var.source_bucket_name == null ? true : can(regex("^[a-z0-9][-_.a-z0-9]{1,61}[a-z0-9]$", var.source_bucket_name))
    error_message = "source_bucket_name must be a valid bucket name (3 to 63 lowercase letters, digits, '-', '_' or '.')."
  }
}

variable "build_service_account" {
  description = "Service account Cloud Build uses to build the function, as projects/PROJECT/serviceAccounts/EMAIL. null = the project default (see README: newer projects need one)."
  type        = string
  default     = null

  validation {
    condition     = var.build_service_account == null ? true : can(regex("^projects/[^/]+/serviceAccounts/[^/]+@[^/]+$", var.build_service_account))
    error_message = "build_service_account must look like projects/PROJECT/serviceAccounts/EMAIL."
  }
}

# ---------------------------------------------------------------------------
# Function (Cloud Run functions, 2nd gen)
# ---------------------------------------------------------------------------

variable "memory" {
  description = "Memory of one function instance (Cloud Run syntax), e.g. 512Mi, 1Gi, 2Gi."
  type        = string
  default     = "1Gi"

  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]+)?(Mi|Gi|M|G)$", var.memory))
    error_message = "memory must be a quantity such as 512Mi, 1Gi or 2Gi."
  }
}

variable "cpu" {
  description = "vCPUs of one function instance (available_cpu), e.g. \"1\" or \"2\". At least 1 is advised: one request runs concurrent transfers."
  type        = string
  default     = "1"

  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?|[0-9]+m)$", var.cpu))
    error_message = "cpu must be a number of vCPUs such as \"1\", \"2\" or \"0.583\"."
  }
}

variable "max_instance_count" {
  description = "Upper bound of concurrently running instances (each handles one request at a time). Also bounds the load put on the Healthcare API quota."
  type        = number
  default     = 10

  validation {
    condition     = var.max_instance_count >= 1 && var.max_instance_count <= 1000 && floor(var.max_instance_count) == var.max_instance_count
    error_message = "max_instance_count must be an integer between 1 and 1000."
  }
}

variable "min_instance_count" {
  description = "Instances kept warm (0 = scale to zero)."
  type        = number
  default     = 0

  validation {
    condition     = var.min_instance_count >= 0 && floor(var.min_instance_count) == var.min_instance_count
    error_message = "min_instance_count must be a non-negative integer."
  }
}

variable "timeout_seconds" {
  description = "Request timeout of the function. 540 s is the limit of event-driven functions; it must stay below the push subscription's ack deadline (600 s) so Pub/Sub never redelivers a request still running."
  type        = number
  default     = 540

  validation {
    condition     = var.timeout_seconds >= 60 && var.timeout_seconds <= 540
    error_message = "timeout_seconds must be between 60 and 540."
  }
}

variable "deadline_seconds" {
  description = "DEADLINE_SECONDS: the worker's own budget per request; it hands the remaining work on (continuation request) before it. Must be below timeout_seconds."
  type        = number
  default     = 480

  validation {
    condition     = var.deadline_seconds >= 30 && var.deadline_seconds <= 530
    error_message = "deadline_seconds must be between 30 and 530 (and below timeout_seconds)."
  }
}

variable "worker_concurrency" {
  description = "CONCURRENCY: parallel per-instance transfers inside one request. Google suggests at most about 20 concurrent requests per client."
  type        = number
  default     = 8

  validation {
    condition     = var.worker_concurrency >= 1 && var.worker_concurrency <= 32 && floor(var.worker_concurrency) == var.worker_concurrency
    error_message = "worker_concurrency must be an integer between 1 and 32."
  }
}

variable "healthcare_api_url" {
  description = "HEALTHCARE_API_URL: base URL of the Cloud Healthcare API."
  type        = string
  default     = "https://healthcare.googleapis.com/v1"

  validation {
    condition     = can(regex("^https://[^ ]+[^/ ]$", var.healthcare_api_url))
    error_message = "healthcare_api_url must be an https:// URL without a trailing slash."
  }
}

variable "extra_environment_variables" {
  description = "Additional environment variables of the function (e.g. SEARCH_PAGE_SIZE). They may override LOG_EXECUTION_ID but not the worker settings the module sets."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------
# DICOM stores and deletion
# ---------------------------------------------------------------------------

variable "dicom_store_ids" {
  description = "Existing DICOM stores the worker may read (ALLOWED_DICOM_STORES), as projects/P/locations/L/datasets/D/dicomStores/S. The module grants IAM on them; it never creates or changes the stores."
  type        = list(string)

  validation {
    condition     = length(var.dicom_store_ids) > 0
    error_message = "dicom_store_ids must name at least one DICOM store."
  }

  validation {
    condition = alltrue([
      for id in var.dicom_store_ids :
      can(regex("^projects/[^/]+/locations/[a-z0-9-]+/datasets/[A-Za-z0-9_-]{1,256}/dicomStores/[A-Za-z0-9_-]{1,256}$", id))
    ])
    error_message = "Each DICOM store id must match projects/.+/locations/.+/datasets/.+/dicomStores/.+ (e.g. projects/p/locations/europe-west4/datasets/d/dicomStores/s)."
  }
}

variable "delete_enabled" {
  description = "DELETE_ENABLED: allow delete and archive (copy, verify, delete) requests. Only when true is roles/healthcare.dicomEditor granted on the stores."
  type        = bool
  default     = false
}

variable "restore_enabled" {
  description = "RESTORE_ENABLED: allow restore requests (STOW-RS of archived instances into the stores). Only when this or delete_enabled is true is roles/healthcare.dicomEditor granted on the stores."
  type        = bool
  default     = false
}

variable "restore_import_enabled" {
  description = "Allow restore with options.method import (dicomStores.import): grants the Cloud Healthcare Service Agent of each store's project roles/storage.objectViewer on the allowed buckets, so the import can read the archive. Leave false to restore by STOW-RS only (the agent then reads nothing of the archive)."
  type        = bool
  default     = false
}

variable "tier_enabled" {
  description = "Allow tier requests (dicomStores.setBlobStorageSettings with a filter file the worker writes under the destination): grants the Cloud Healthcare Service Agent of each store's project roles/storage.objectViewer on the allowed buckets (the same grant as restore_import_enabled), and the runtime roles/healthcare.dicomEditor on the stores (setBlobStorageSettings needs dicomWebWrite)."
  type        = bool
  default     = false
}

variable "grant_dicom_editor" {
  description = "When delete_enabled, restore_enabled or tier_enabled, grant roles/healthcare.dicomEditor on the stores. Set false only if you bind a narrower custom role (dicomWebDelete + operations.get) yourself."
  type        = bool
  default     = true
}

variable "grant_dataset_operations_viewer" {
  description = "When delete_enabled, also grant roles/healthcare.datasetViewer (metadata only: datasets.get/list, operations.get; no DICOM data) on the parent dataset of each store, so the worker can poll the DeleteSeries long-running operation, which lives at the dataset level. Set false if your organisation grants operations.get otherwise."
  type        = bool
  default     = true
}

variable "request_publishers" {
  description = "IAM members (user:, group:, serviceAccount:, principal:) that may publish requests onto the request topic. Authoritative: with the function's own service account and, with dicom_store_notifications_publisher, the Healthcare service agents, they are the only principals granted roles/pubsub.publisher on the topic; any other topic-level publisher is removed. Empty: only the function itself (and store notifications)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for member in var.request_publishers : can(regex("^(user|group|serviceAccount|principal):[^\\s]+$", member))])
    error_message = "Each request publisher must be one named principal: user:EMAIL, group:EMAIL, serviceAccount:EMAIL or principal:IDENTIFIER, not a public or domain-wide member."
  }
}

variable "sweep_rules" {
  description = "Archival by rule: one Cloud Scheduler job per rule publishes a sweep request onto the request topic on the rule's cron schedule (time_zone, default Etc/UTC). The sweep lists the series of store (null with DICOMWEB_URL) matching filters (modality, studyDate: YYYYMMDD, YYYYMMDD-YYYYMMDD, YYYYMMDD- or -YYYYMMDD) and publishes one request per series: then (action, destination, options; any series action but sweep). The request carries no requestId (each run's is its Pub/Sub message id) and no follow-up field, so it needs no signature. The Cloud Scheduler service agent is added to the request topic's publishers. Actions delete and archive still need delete_enabled, restore needs restore_enabled, tier needs tier_enabled."
  type = list(object({
    name      = string
    schedule  = string
    time_zone = optional(string, "Etc/UTC")
    store     = optional(string)
    filters = optional(object({
      modality  = optional(string)
      studyDate = optional(string)
    }), {})
    then = object({
      action      = string
      destination = optional(string)
      options = optional(object({
        transferSyntax  = optional(string)
        includeMetadata = optional(bool)
        mode            = optional(string)
        method          = optional(string)
        storageClass    = optional(string)
      }))
    })
  }))
  default = []

  validation {
    condition     = alltrue([for rule in var.sweep_rules : can(regex("^[a-z][-a-z0-9]{0,29}$", rule.name))]) && length(distinct([for rule in var.sweep_rules : rule.name])) == length(var.sweep_rules)
    error_message = "Each sweep rule needs a unique name of 1 to 30 lowercase letters, digits or hyphens, starting with a letter."
  }

  validation {
    condition     = alltrue([for rule in var.sweep_rules : contains(["search", "retrieve", "delete", "archive", "restore", "verify", "tier"], rule.then.action)])
    error_message = "A sweep rule's then.action must be a series action (search, retrieve, delete, archive, restore, verify, tier), never sweep."
  }

  validation {
    condition     = alltrue([for rule in var.sweep_rules : rule.store == null || can(regex("^projects/[^/]+/locations/[^/]+/datasets/[^/]+/dicomStores/[^/]+$", rule.store))])
    error_message = "A sweep rule's store must be projects/P/locations/L/datasets/D/dicomStores/S (or null with DICOMWEB_URL)."
  }

  validation {
    condition = alltrue([for rule in var.sweep_rules : (
      (rule.filters.modality == null || can(regex("^[A-Z0-9_ ]{1,16}$", rule.filters.modality)))
      && (rule.filters.studyDate == null || can(regex("^([0-9]{8}|[0-9]{8}-[0-9]{8}|[0-9]{8}-|-[0-9]{8})$", rule.filters.studyDate)))
    )])
    error_message = "A sweep rule's filters.modality must be an upper-case modality code, filters.studyDate YYYYMMDD, YYYYMMDD-YYYYMMDD, YYYYMMDD- or -YYYYMMDD."
  }

  validation {
    condition     = alltrue([for rule in var.sweep_rules : length(split(" ", trimspace(rule.schedule))) == 5])
    error_message = "A sweep rule's schedule must be a five-field cron expression, e.g. \"0 2 * * *\"."
  }
}

variable "continuation_key_ids" {
  description = "Ids of the keys that sign the worker's follow-up messages (CONTINUATION_KEYS_FILE, a mounted Secret Manager secret); each gets a generated 48-character secret. The first signs, all verify. Rotate: add a new id second, apply; move it first, apply; once no follow-up signed with the old key can be pending, drop the old id, apply."
  type        = list(string)
  default     = ["k1"]

  validation {
    condition     = length(var.continuation_key_ids) > 0 && length(distinct(var.continuation_key_ids)) == length(var.continuation_key_ids)
    error_message = "continuation_key_ids must name at least one key, each once."
  }

  validation {
    condition     = alltrue([for id in var.continuation_key_ids : can(regex("^[A-Za-z0-9_-]{1,32}$", id))])
    error_message = "Each continuation key id must be 1 to 32 letters, digits, _ or -."
  }
}

variable "dicom_store_notifications_publisher" {
  description = "Grant the Cloud Healthcare service agent of each store's project roles/pubsub.publisher on the request topic, so a store's notification config may publish to it. The notification config itself must be set on the store by whoever manages it (see README)."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------
# Destination bucket
# ---------------------------------------------------------------------------

variable "create_destination_bucket" {
  description = "Create the destination bucket. false = use the existing bucket destination_bucket_name (the module then only grants IAM on it)."
  type        = bool
  default     = true
}

variable "destination_bucket_name" {
  description = "Name of the destination bucket. Required when create_destination_bucket is false; null = \"<project_id>-dicom-archive\" when it is created."
  type        = string
  default     = null

  validation {
    condition     = var.destination_bucket_name == null ? true : can(regex("^[a-z0-9][-_.a-z0-9]{1,61}[a-z0-9]$", var.destination_bucket_name))
    error_message = "destination_bucket_name must be a valid bucket name (3 to 63 lowercase letters, digits, '-', '_' or '.')."
  }
}

variable "destination_prefix" {
  description = "Object prefix of DEFAULT_DESTINATION (gs://<bucket>/<prefix>). Empty = bucket root."
  type        = string
  default     = "dicom"

  validation {
    condition     = !startswith(var.destination_prefix, "/") && !endswith(var.destination_prefix, "/")
    error_message = "destination_prefix must not start or end with '/'."
  }
}

variable "additional_allowed_buckets" {
  description = "Other existing buckets requests may name as destination (added to ALLOWED_BUCKETS); the worker gets objectCreator and objectViewer on each."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for b in var.additional_allowed_buckets : can(regex("^[a-z0-9][-_.a-z0-9]{1,61}[a-z0-9]$", b))])
    error_message = "additional_allowed_buckets must hold bucket names only (no gs:// and no path)."
  }
}

variable "bucket_location" {
  description = "Location of the created buckets. null = region."
  type        = string
  default     = null
}

variable "bucket_versioning" {
  description = "Object versioning on the created buckets (a deleted or overwritten archive object stays recoverable)."
  type        = bool
  default     = true
}

variable "bucket_archive_after_days" {
  description = "Move destination objects to the ARCHIVE storage class after this many days. null = no lifecycle rule."
  type        = number
  default     = null

  validation {
    condition     = var.bucket_archive_after_days == null ? true : var.bucket_archive_after_days >= 1 && floor(var.bucket_archive_after_days) == var.bucket_archive_after_days
    error_message = "bucket_archive_after_days must be null or an integer >= 1."
  }
}

variable "bucket_noncurrent_versions_delete_after_days" {
  description = "With versioning on, delete noncurrent object versions this many days after they became noncurrent. null = keep them."
  type        = number
  default     = null

  validation {
    condition     = var.bucket_noncurrent_versions_delete_after_days == null ? true : var.bucket_noncurrent_versions_delete_after_days >= 1
    error_message = "bucket_noncurrent_versions_delete_after_days must be null or >= 1."
  }
}

variable "access_log_bucket" {
  description = "Existing bucket that receives usage (access) logs of the created buckets. null = no usage logs (Cloud Audit Logs still apply)."
  type        = string
  default     = null
}

# ---------------------------------------------------------------------------
# Encryption
# ---------------------------------------------------------------------------

variable "kms_key_name" {
  description = "Cloud KMS key (projects/P/locations/L/keyRings/R/cryptoKeys/K) encrypting the three topics and the created destination bucket (not the source bucket, which holds code only). null = Google-managed keys. The key must be in a location compatible with the buckets and the Pub/Sub message storage regions."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_name == null ? true : can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.kms_key_name))
    error_message = "kms_key_name must look like projects/P/locations/L/keyRings/R/cryptoKeys/K."
  }
}

variable "grant_kms_to_service_agents" {
  description = "When kms_key_name is set, grant roles/cloudkms.cryptoKeyEncrypterDecrypter on that key to the Pub/Sub and Cloud Storage service agents of the project (needed before the topics and buckets can use it)."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------
# Pub/Sub delivery
# ---------------------------------------------------------------------------

variable "topic_message_retention" {
  description = "How long the request and completion topics keep messages, acknowledged or not, so a subscription can seek back (replay) or a late consumer catch up, e.g. 604800s = 7 days."
  type        = string
  default     = "604800s"

  validation {
    condition     = can(regex("^[0-9]+s$", var.topic_message_retention)) ? (tonumber(trimsuffix(var.topic_message_retention, "s")) >= 600 && tonumber(trimsuffix(var.topic_message_retention, "s")) <= 2678400) : false
    error_message = "topic_message_retention must be a duration in seconds between 600s and 2678400s (31 days), e.g. 604800s."
  }
}

variable "dead_letter_retention" {
  description = "How long undeliverable requests are kept on the dead-letter topic and its pull subscription, e.g. 604800s = 7 days (the subscription maximum)."
  type        = string
  default     = "604800s"

  validation {
    condition     = can(regex("^[0-9]+s$", var.dead_letter_retention)) ? (tonumber(trimsuffix(var.dead_letter_retention, "s")) >= 600 && tonumber(trimsuffix(var.dead_letter_retention, "s")) <= 604800) : false
    error_message = "dead_letter_retention must be a duration in seconds between 600s and 604800s (7 days)."
  }
}

variable "max_delivery_attempts" {
  description = "Delivery attempts of one request before Pub/Sub moves it to the dead-letter topic (5 to 100)."
  type        = number
  default     = 10

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100 && floor(var.max_delivery_attempts) == var.max_delivery_attempts
    error_message = "max_delivery_attempts must be an integer between 5 and 100."
  }
}

variable "retry_minimum_backoff" {
  description = "Minimum delay before Pub/Sub redelivers a failed request (0s to 600s). 10s matches Eventarc's retry policy."
  type        = string
  default     = "10s"

  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]+)?s$", var.retry_minimum_backoff)) ? (tonumber(trimsuffix(var.retry_minimum_backoff, "s")) <= 600) : false
    error_message = "retry_minimum_backoff must be a duration in seconds between 0s and 600s, e.g. 10s."
  }
}

variable "retry_maximum_backoff" {
  description = "Maximum delay between redeliveries of a failed request (0s to 600s)."
  type        = string
  default     = "600s"

  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]+)?s$", var.retry_maximum_backoff)) ? (tonumber(trimsuffix(var.retry_maximum_backoff, "s")) <= 600) : false
    error_message = "retry_maximum_backoff must be a duration in seconds between 0s and 600s, e.g. 600s."
  }
}

variable "pubsub_allowed_persistence_regions" {
  description = "Regions where Pub/Sub may store the messages of the three topics (data residency). Empty = no restriction."
  type        = list(string)
  default     = []
}

variable "grant_token_creator_to_pubsub_agent" {
  description = "Grant roles/iam.serviceAccountTokenCreator on the push invoker service account (only on it) to the Pub/Sub service agent, which mints the OIDC token of each push. Projects created before 2021-04-08 need it; later ones already have it through the agent's own role."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------
# Audit trail (audit.tf)
# ---------------------------------------------------------------------------

variable "audit_enabled" {
  description = "Write every completion event into a BigQuery table (dataset audit_dataset_id, table completion_events) through a BigQuery subscription on the completion topic, with its own dead-letter topic and pull subscription for events BigQuery refuses."
  type        = bool
  default     = true
}

variable "audit_dataset_id" {
  description = "BigQuery dataset of the audit table. null = the name with '-' as '_', followed by _audit (dicom_series_worker_audit)."
  type        = string
  default     = null

  validation {
    condition     = var.audit_dataset_id == null ? true : can(regex("^[A-Za-z0-9_]{1,1024}$", var.audit_dataset_id))
    error_message = "audit_dataset_id must be letters, digits and underscores only."
  }
}

variable "audit_location" {
  description = "BigQuery location of the audit dataset (a region such as europe-west4, or EU / US). null = region."
  type        = string
  default     = null
}

variable "audit_retention_days" {
  description = "Days a partition (one day of events, by publish time) of the audit table is kept. null = kept for ever, as an audit trail usually must be."
  type        = number
  default     = null

  validation {
    condition     = var.audit_retention_days == null ? true : var.audit_retention_days >= 1 && floor(var.audit_retention_days) == var.audit_retention_days
    error_message = "audit_retention_days must be null or an integer >= 1."
  }
}

variable "audit_kms_key_name" {
  description = "Cloud KMS key encrypting the audit dataset and table (in the audit location; BigQuery's own service agent is granted it when grant_kms_to_service_agents). null = Google-managed keys."
  type        = string
  default     = null

  validation {
    condition     = var.audit_kms_key_name == null ? true : can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.audit_kms_key_name))
    error_message = "audit_kms_key_name must look like projects/P/locations/L/keyRings/R/cryptoKeys/K."
  }
}

# ---------------------------------------------------------------------------
# Monitoring (monitoring.tf)
# ---------------------------------------------------------------------------

variable "monitoring_enabled" {
  description = "Create the log-based metrics (completion events by action, status and error code; instances; bytes; empty sweeps), the alert policies (dead-letter backlog, failed-event ratio, function errors, a sweep that published nothing) and the Cloud Monitoring dashboard."
  type        = bool
  default     = true
}

variable "notification_channels" {
  description = "Cloud Monitoring notification channels (projects/P/notificationChannels/ID) every alert policy notifies. Empty: the alerts open incidents in the console only."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for channel in var.notification_channels : can(regex("^projects/[^/]+/notificationChannels/[^/]+$", channel))])
    error_message = "Each notification channel must be projects/P/notificationChannels/ID."
  }
}

variable "alert_failed_event_ratio" {
  description = "Alert when more than this share (0 to 1) of the completion events of an hour are failures."
  type        = number
  default     = 0.05

  validation {
    condition     = var.alert_failed_event_ratio > 0 && var.alert_failed_event_ratio < 1
    error_message = "alert_failed_event_ratio must be between 0 and 1 (exclusive)."
  }
}

variable "alert_function_errors" {
  description = "Alert when the function answers more than this many deliveries with a 5xx (a redelivery or a defect) in 10 minutes."
  type        = number
  default     = 20

  validation {
    condition     = var.alert_function_errors >= 0 && floor(var.alert_function_errors) == var.alert_function_errors
    error_message = "alert_function_errors must be a non-negative integer."
  }
}

# ---------------------------------------------------------------------------
# Another DICOMweb server (secrets.tf)
# ---------------------------------------------------------------------------

variable "dicomweb_url" {
  description = "DICOMWEB_URL: a DICOMweb service root (https) the worker uses instead of the Healthcare API; requests then name series as studies/X/series/Y, and ALLOWED_DICOM_STORES gains `dicomweb`. null = the Healthcare API."
  type        = string
  default     = null

  validation {
    condition     = var.dicomweb_url == null ? true : can(regex("^https://[^ ]+[^/ ]$", var.dicomweb_url))
    error_message = "dicomweb_url must be an https:// URL without a trailing slash."
  }
}

variable "dicomweb_auth" {
  description = "DICOMWEB_AUTH with dicomweb_url: google (the function's own identity), none, basic (dicomweb_username and the password in dicomweb_secret_id) or bearer (the token in dicomweb_secret_id)."
  type        = string
  default     = "google"

  validation {
    condition     = contains(["google", "none", "basic", "bearer"], var.dicomweb_auth)
    error_message = "dicomweb_auth must be one of google, none, basic, bearer."
  }
}

variable "dicomweb_username" {
  description = "DICOMWEB_USERNAME with dicomweb_auth basic."
  type        = string
  default     = null
}

variable "dicomweb_secret_id" {
  description = "With dicomweb_auth basic or bearer: the id (short name) of an existing Secret Manager secret of project_id holding the password or token, one line. The module grants the function secretAccessor on it and mounts it as the file DICOMWEB_PASSWORD_FILE or DICOMWEB_TOKEN_FILE; it never reads or stores the value."
  type        = string
  default     = null

  validation {
    condition     = var.dicomweb_secret_id == null ? true : can(regex("^[A-Za-z0-9_-]{1,255}$", var.dicomweb_secret_id))
    error_message = "dicomweb_secret_id must be a secret's short name (letters, digits, _ and -), not a path."
  }
}

variable "dicomweb_secret_version" {
  description = "The version of dicomweb_secret_id the function mounts: \"latest\" (each new instance reads the newest) or a version number (every instance moves when it changes). See the README's rotation."
  type        = string
  default     = "latest"

  validation {
    condition     = can(regex("^(latest|[1-9][0-9]*)$", var.dicomweb_secret_version))
    error_message = "dicomweb_secret_version must be latest or a version number."
  }
}

variable "alert_backlog_age_hours" {
  description = "Alert when the oldest request on the push subscription has waited longer than this many hours (Pub/Sub drops it unanswered after the subscription's 7-day retention)."
  type        = number
  default     = 72

  validation {
    condition     = var.alert_backlog_age_hours >= 1 && var.alert_backlog_age_hours < 168
    error_message = "alert_backlog_age_hours must be between 1 and 167 (below the 7-day retention)."
  }
}
