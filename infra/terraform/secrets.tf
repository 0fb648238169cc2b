# The keys that sign the worker's follow-up messages (worker/continuation.py).
#
# A follow-up carries fields only the worker may set (a delete's operation,
# one instance, a continuation count); the worker refuses them without its
# HMAC, so a publisher cannot have a series reported deleted by naming a
# finished operation. The keys are generated here (random_password), never
# typed, passed or kept in a tfvars file; like every generated secret they are
# in the Terraform state, which must be protected anyway.
#
# Rotation, one id at a time in var.continuation_key_ids (the first signs, all
# verify): add the new id second and apply; move it first and apply; when no
# follow-up signed with the old key can still be pending, drop it and apply.

locals {
  continuation_keys_dir  = "/etc/${var.name}"
  continuation_keys_file = "continuation-keys"
}

resource "random_password" "continuation_key" {
  for_each = toset(var.continuation_key_ids)

  length = 48
  # Letters and digits only: no separator (comma, white space, =) in a secret.
  special = false
}

resource "google_secret_manager_secret" "continuation_keys" {
  project   = var.project_id
  secret_id = "${var.name}-continuation-keys"
  labels    = local.labels

  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "continuation_keys" {
  secret      = google_secret_manager_secret.continuation_keys.id
  secret_data = join("\n", [for id in var.continuation_key_ids : "${id}=${random_password.continuation_key[id].result}"])

  lifecycle {
    # The function moves to the new version before the old one is destroyed.
    create_before_destroy = true
  }
}

# Only the function reads the keys.
resource "google_secret_manager_secret_iam_member" "runtime_continuation_keys" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.continuation_keys.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = local.runtime_member
}

# --- The DICOMweb server's password or token ---------------------------------
#
# With dicomweb_url and dicomweb_auth basic or bearer, the worker reads its
# password (DICOMWEB_PASSWORD_FILE) or token (DICOMWEB_TOKEN_FILE) from a file:
# the mounted version of an existing Secret Manager secret, dicomweb_secret_id.
# The module never holds the value: it is added with
#   printf %s "$PASSWORD" | gcloud secrets versions add SECRET --data-file=-
# so it is in no tfvars file and no Terraform state. The function's account
# may read this one secret and nothing else of Secret Manager.
#
# Rotation: add a new version (both credentials valid at the server for the
# overlap, when it can), then apply. With dicomweb_secret_version "latest"
# (default), `terraform apply` alone changes nothing: each instance reads the
# file when it starts, so new instances get the new version and running ones
# keep the old until they stop; apply with a pinned version number (or
# redeploy) to move every instance at once, then disable the old version
# (gcloud secrets versions disable) once nothing uses it.

locals {
  dicomweb_secret_enabled = var.dicomweb_url != null && contains(["basic", "bearer"], var.dicomweb_auth)
  dicomweb_secret_dir     = "/etc/${var.name}-dicomweb"
  dicomweb_secret_file    = var.dicomweb_auth == "bearer" ? "token" : "password"

  # Merged into the function's environment (function.tf) only with dicomweb_url.
  dicomweb_environment = var.dicomweb_url == null ? {} : merge(
    {
      DICOMWEB_URL  = var.dicomweb_url
      DICOMWEB_AUTH = var.dicomweb_auth
    },
    var.dicomweb_username == null ? {} : { DICOMWEB_USERNAME = var.dicomweb_username },
    local.dicomweb_secret_enabled ? {
      (var.dicomweb_auth == "bearer" ? "DICOMWEB_TOKEN_FILE" : "DICOMWEB_PASSWORD_FILE") = "${local.dicomweb_secret_dir}/${local.dicomweb_secret_file}"
    } : {},
  )
}

resource "google_secret_manager_secret_iam_member" "runtime_dicomweb_secret" {
  count = local.dicomweb_secret_enabled ? 1 : 0

  project   = var.project_id
  secret_id = var.dicomweb_secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = local.runtime_member

  lifecycle {
    precondition {
      condition     = var.dicomweb_secret_id != null
      error_message = "dicomweb_secret_id is required with dicomweb_auth basic or bearer: the id of a Secret Manager secret of project_id holding the password or token."
    }
    precondition {
      condition     = var.dicomweb_auth != "basic" || var.dicomweb_username != null
      error_message = "dicomweb_username is required with dicomweb_auth basic."
    }
  }
}
