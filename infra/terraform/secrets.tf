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
