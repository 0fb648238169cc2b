"""Static checks of the Terraform module in infra/terraform.

Offline and fast: every .tf file is parsed with python-hcl2 and the parsed
configuration is checked for the properties the deployment depends on
(delivery with retries and dead-lettering, least-privilege IAM, locked-down
buckets, the function's runtime and entry point, documented variables).
`terraform fmt -check` runs when the terraform binary is on PATH.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2.utils import SerializationOptions

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO_ROOT / "infra" / "terraform"
EXAMPLE_DIR = MODULE_DIR / "examples" / "basic"

# Every role the module may grant. Anything else (roles/owner, roles/editor,
# any *admin* role, project-level grants) fails the suite.
ROLE_ALLOWLIST = frozenset(
    {
        "roles/healthcare.dicomViewer",
        "roles/healthcare.dicomEditor",
        "roles/healthcare.datasetViewer",
        "roles/storage.objectCreator",
        "roles/storage.objectViewer",
        "roles/pubsub.publisher",
        "roles/pubsub.subscriber",
        "roles/run.invoker",
        "roles/iam.serviceAccountTokenCreator",
        "roles/cloudkms.cryptoKeyEncrypterDecrypter",
        "roles/secretmanager.secretAccessor",
        "roles/bigquery.dataEditor",
    }
)

# The one authoritative grant: who may publish onto the request topic (see test_only_named_principals_...).
AUTHORITATIVE_GRANTS = frozenset({("google_pubsub_topic_iam_binding", "request_publishers")})

# Grants that must not exist at all in this module (project-wide blast radius).
FORBIDDEN_IAM_TYPES = re.compile(r"^google_(project|folder|organization)_iam_")

WORKER_ENV = (
    "COMPLETION_TOPIC",
    "REQUEST_TOPIC",
    "DEFAULT_DESTINATION",
    "ALLOWED_BUCKETS",
    "ALLOWED_DICOM_STORES",
    "DELETE_ENABLED",
    "RESTORE_ENABLED",
    "CONCURRENCY",
    "DEADLINE_SECONDS",
    "HEALTHCARE_API_URL",
    "CONTINUATION_KEYS_FILE",
)

_OPTIONS = SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)


# ---------------------------------------------------------------------------
# Parsing helpers
# ---------------------------------------------------------------------------


def _tf_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.tf") if ".terraform" not in p.parts)


def _unquote(value: Any) -> Any:
    """Strip the quotes python-hcl2 may keep around labels and strings."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _clean(node: Any) -> Any:
    """Drop python-hcl2 metadata keys (__is_block__, __comments__...) and quotes."""
    if isinstance(node, dict):
        return {_unquote(k): _clean(v) for k, v in node.items() if not str(k).startswith("__")}
    if isinstance(node, list):
        return [_clean(v) for v in node]
    return _unquote(node)


def _load(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        parsed = hcl2.load(handle, serialization_options=_OPTIONS)
    cleaned: dict[str, Any] = _clean(parsed)
    return cleaned


class Module:
    """The merged top-level blocks of every .tf file of one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.resources: dict[tuple[str, str], dict[str, Any]] = {}
        self.data: dict[tuple[str, str], dict[str, Any]] = {}
        self.variables: dict[str, dict[str, Any]] = {}
        self.outputs: dict[str, dict[str, Any]] = {}
        self.locals: dict[str, Any] = {}
        self.modules: dict[str, dict[str, Any]] = {}
        self.text = ""
        for path in sorted(directory.glob("*.tf")):
            self.text += path.read_text(encoding="utf-8") + "\n"
            parsed = _load(path)
            for kind, target in (("resource", self.resources), ("data", self.data)):
                for entry in parsed.get(kind, []):
                    for rtype, named in entry.items():
                        for name, body in named.items():
                            assert (rtype, name) not in target, f"duplicate {kind} {rtype}.{name}"
                            target[(rtype, name)] = body
            for block, target_map in (
                ("variable", self.variables),
                ("output", self.outputs),
                ("module", self.modules),
            ):
                for entry in parsed.get(block, []):
                    target_map.update(entry)
            for entry in parsed.get("locals", []):
                self.locals.update(entry)

    def resource(self, rtype: str, name: str) -> dict[str, Any]:
        assert (rtype, name) in self.resources, f"resource {rtype}.{name} is missing"
        return self.resources[(rtype, name)]

    def of_type(self, rtype: str) -> dict[str, dict[str, Any]]:
        return {name: body for (t, name), body in self.resources.items() if t == rtype}

    def default(self, variable: str) -> Any:
        assert variable in self.variables, f"variable {variable} is missing"
        return self.variables[variable].get("default")


def _block(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The single nested block `name` of a resource body."""
    blocks = body.get(name)
    assert isinstance(blocks, list), f"block {name} is missing"
    assert len(blocks) == 1, f"expected one {name} block, got {len(blocks)}"
    block: dict[str, Any] = blocks[0]
    return block


def _dynamic_blocks(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [d[name] for d in body.get("dynamic", []) if name in d]


def _refs(expr: Any) -> str:
    """An attribute as text, to look for references in it."""
    return expr if isinstance(expr, str) else repr(expr)


@pytest.fixture(scope="module")
def module() -> Module:
    return Module(MODULE_DIR)


@pytest.fixture(scope="module")
def example() -> Module:
    return Module(EXAMPLE_DIR)


def _all_iam_members(mod: Module) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every grant, one per member expression (a binding's members as one text)."""
    for (rtype, name), body in mod.resources.items():
        if "_iam_" in rtype:
            member = body["member"] if "member" in body else _refs(body["members"])
            yield rtype, name, {**body, "member": member}


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------


def test_module_layout() -> None:
    for name in ("versions.tf", "variables.tf", "main.tf", "outputs.tf", "README.md", "check.sh"):
        assert (MODULE_DIR / name).is_file(), f"infra/terraform/{name} is missing"
    assert (EXAMPLE_DIR / "main.tf").is_file()


@pytest.mark.parametrize("path", _tf_files(MODULE_DIR), ids=lambda p: str(p.relative_to(MODULE_DIR)))
def test_every_tf_file_parses(path: Path) -> None:
    assert isinstance(_load(path), dict)


def test_provider_requirements(module: Module) -> None:
    assert 'source  = "hashicorp/google"' in module.text
    assert "required_version" in module.text


# ---------------------------------------------------------------------------
# The function
# ---------------------------------------------------------------------------


def test_function_runtime_and_entry_point(module: Module) -> None:
    fn = module.resource("google_cloudfunctions2_function", "worker")
    build = _block(fn, "build_config")
    assert build["runtime"] == "python311"
    assert build["entry_point"] == "handle_series_request"
    storage = _block(_block(build, "source"), "storage_source")
    assert "google_storage_bucket_object.source" in storage["object"]


def test_function_service_config(module: Module) -> None:
    fn = module.resource("google_cloudfunctions2_function", "worker")
    svc = _block(fn, "service_config")
    assert svc["timeout_seconds"] == "${var.timeout_seconds}"
    assert module.default("timeout_seconds") == 540
    assert svc["max_instance_request_concurrency"] == 1
    assert svc["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
    assert svc["available_memory"] == "${var.memory}"
    assert module.default("memory") == "1Gi"
    assert svc["max_instance_count"] == "${var.max_instance_count}"
    assert "available_cpu" in svc
    assert "google_service_account.runtime.email" in svc["service_account_email"]


def test_function_environment(module: Module) -> None:
    svc = _block(module.resource("google_cloudfunctions2_function", "worker"), "service_config")
    assert svc["environment_variables"] == "${local.function_environment}"
    assert "local.module_environment" in module.locals["function_environment"]
    env = module.locals["module_environment"]
    assert isinstance(env, dict)
    missing = [key for key in WORKER_ENV if key not in env]
    assert not missing, f"environment variables missing: {missing}"
    assert "google_pubsub_topic.completion.id" in env["COMPLETION_TOPIC"]
    assert "google_pubsub_topic.request.id" in env["REQUEST_TOPIC"]
    assert "var.delete_enabled" in env["DELETE_ENABLED"]
    assert "var.restore_enabled" in env["RESTORE_ENABLED"]
    assert module.default("restore_enabled") is False
    assert module.default("deadline_seconds") == 480
    assert module.default("deadline_seconds") < module.default("timeout_seconds")
    assert module.default("healthcare_api_url") == "https://healthcare.googleapis.com/v1"
    assert module.default("delete_enabled") is False


def test_source_is_zipped_from_the_repository(module: Module) -> None:
    archive = module.data[("archive_file", "source")]
    assert archive["type"] == "zip"
    assert archive["excludes"] == "${local.source_excludes}"
    assert "${path.module}/../.." in module.locals["source_dir"]
    obj = module.resource("google_storage_bucket_object", "source")
    assert "data.archive_file.source.output_path" in obj["source"]
    # Content-addressed: a code change must change the object, hence redeploy.
    assert "data.archive_file.source.output_md5" in obj["name"]


def _glob_to_regex(pattern: str) -> re.Pattern[str]:
    """doublestar semantics as used by the archive provider's `excludes`."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(f"^{out}$")


def _terraform_shipped_files(module: Module) -> list[str]:
    """Replays archive_file's walk over the real tree with the module's excludes."""
    shipped_top = module.locals["shipped_top_level_files"]
    excludes = [_glob_to_regex(p) for p in module.default("source_excludes")]
    # local.source_excludes adds fileset(source_dir, "*") minus the shipped files.
    top_files = {p.name for p in REPO_ROOT.iterdir() if p.is_file()}
    excludes += [_glob_to_regex(f) for f in top_files - set(shipped_top)]

    def excluded(rel: str) -> bool:
        return any(rx.match(rel) for rx in excludes)

    shipped: list[str] = []
    for dirpath, dirnames, filenames in os.walk(REPO_ROOT):
        rel_dir = Path(dirpath).relative_to(REPO_ROOT).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        # archive_file skips a matching directory without entering it.
        dirnames[:] = [d for d in dirnames if not excluded(rel_dir + d)]
        shipped += [rel_dir + f for f in filenames if not excluded(rel_dir + f)]
    return sorted(shipped)


def test_source_zip_ships_only_main_requirements_and_worker(module: Module) -> None:
    shipped_top = module.locals["shipped_top_level_files"]
    assert sorted(shipped_top) == ["main.py", "requirements.txt"]
    shipped = _terraform_shipped_files(module)
    unexpected = [f for f in shipped if f not in shipped_top and not f.startswith("worker/")]
    assert not unexpected, f"the function zip would ship: {unexpected}"
    assert "worker/__init__.py" in shipped
    assert not [f for f in shipped if "__pycache__" in f or f.endswith(".pyc")]


def test_gcloudignore_ships_the_same_files(module: Module) -> None:
    """A `gcloud functions deploy` and the Terraform zip must carry the same files."""
    gcloudignore = REPO_ROOT / ".gcloudignore"
    if not gcloudignore.is_file():
        pytest.skip("no .gcloudignore")
    pathspec = pytest.importorskip("pathspec")
    spec = pathspec.GitIgnoreSpec.from_lines(gcloudignore.read_text(encoding="utf-8").splitlines())
    heavy = (".git", ".venv", ".local")  # never walked: both must leave them out
    for name in heavy:
        assert spec.match_file(f"{name}/x"), f".gcloudignore must exclude {name}/"
    gcloud_shipped: list[str] = []
    for dirpath, dirnames, filenames in os.walk(REPO_ROOT):
        rel_dir = Path(dirpath).relative_to(REPO_ROOT).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = [d for d in dirnames if rel_dir + d not in heavy]
        gcloud_shipped += [rel_dir + f for f in filenames if not spec.match_file(rel_dir + f)]
    assert sorted(gcloud_shipped) == _terraform_shipped_files(module)


# ---------------------------------------------------------------------------
# Pub/Sub delivery, retries, dead-lettering
# ---------------------------------------------------------------------------


def test_topics_exist(module: Module) -> None:
    topics = module.of_type("google_pubsub_topic")
    assert {"request", "completion", "dead_letter"} <= set(topics)
    assert topics["request"]["message_retention_duration"] == "${var.topic_message_retention}"
    assert module.default("topic_message_retention") == "604800s"
    for body in topics.values():
        assert body["kms_key_name"] == "${var.kms_key_name}"


def _delivery_subscription(module: Module) -> dict[str, Any]:
    subs = module.of_type("google_pubsub_subscription")
    push = [body for body in subs.values() if "push_config" in body]
    assert len(push) == 1, "exactly one push subscription must deliver requests to the function"
    return push[0]


def test_requests_are_delivered_with_retries(module: Module) -> None:
    """Either an Eventarc trigger with retries, or a push subscription with a retry policy."""
    fn = module.resource("google_cloudfunctions2_function", "worker")
    if "event_trigger" in fn:
        trigger = _block(fn, "event_trigger")
        assert trigger["event_type"] == "google.cloud.pubsub.topic.v1.messagePublished"
        assert trigger["retry_policy"] == "RETRY_POLICY_RETRY"
        assert "google_pubsub_topic.request" in trigger["pubsub_topic"]
        return
    sub = _delivery_subscription(module)
    assert "google_pubsub_topic.request.id" in sub["topic"]
    push = _block(sub, "push_config")
    assert "google_cloudfunctions2_function.worker.service_config[0].uri" in push["push_endpoint"]
    oidc = _block(push, "oidc_token")
    assert "google_service_account.invoker.email" in oidc["service_account_email"]
    assert "google_cloudfunctions2_function.worker.service_config[0].uri" in oidc["audience"]
    retry = _block(sub, "retry_policy")
    assert retry["minimum_backoff"] == "${var.retry_minimum_backoff}"
    assert retry["maximum_backoff"] == "${var.retry_maximum_backoff}"
    assert module.default("retry_minimum_backoff") == "10s"
    assert module.default("retry_maximum_backoff") == "600s"
    # Pub/Sub must not redeliver while the function still runs.
    assert sub["ack_deadline_seconds"] > module.default("timeout_seconds")


def test_dead_letter_policy(module: Module) -> None:
    sub = _delivery_subscription(module)
    policy = _block(sub, "dead_letter_policy")
    assert "google_pubsub_topic.dead_letter.id" in policy["dead_letter_topic"]
    assert policy["max_delivery_attempts"] == "${var.max_delivery_attempts}"
    default = module.default("max_delivery_attempts")
    assert 5 <= default <= 100
    conditions = " ".join(v["condition"] for v in module.variables["max_delivery_attempts"]["validation"])
    assert ">= 5" in conditions
    assert "<= 100" in conditions


def test_dead_letter_pull_subscription(module: Module) -> None:
    subs = module.of_type("google_pubsub_subscription")
    pulls = [
        body
        for body in subs.values()
        if "google_pubsub_topic.dead_letter" in body["topic"] and "push_config" not in body
    ]
    assert len(pulls) == 1, "a pull subscription must hold dead-lettered requests"
    assert pulls[0]["message_retention_duration"] == "${var.dead_letter_retention}"
    assert module.default("dead_letter_retention") == "604800s"
    assert _block(pulls[0], "expiration_policy")["ttl"] == ""


def test_pubsub_service_agent_can_dead_letter(module: Module) -> None:
    assert "gcp-sa-pubsub.iam.gserviceaccount.com" in module.locals["pubsub_service_agent"]
    publishers = [
        body
        for body in module.of_type("google_pubsub_topic_iam_member").values()
        if "google_pubsub_topic.dead_letter" in body["topic"]
    ]
    assert [b["role"] for b in publishers] == ["roles/pubsub.publisher"]
    assert publishers[0]["member"] == "${local.pubsub_service_agent}"
    subscribers = [
        body
        for body in module.of_type("google_pubsub_subscription_iam_member").values()
        if "google_pubsub_subscription.push" in body["subscription"]
    ]
    assert [b["role"] for b in subscribers] == ["roles/pubsub.subscriber"]
    assert subscribers[0]["member"] == "${local.pubsub_service_agent}"


def test_runtime_publishes_only_on_completion_and_request_topics(module: Module) -> None:
    topics = sorted(
        body["topic"]
        for _, _, body in _all_iam_members(module)
        if "topic" in body and "local.runtime_member" in body["member"]
    )
    assert topics == ["${google_pubsub_topic.completion.name}", "${google_pubsub_topic.request.name}"]


def test_only_named_principals_publish_requests(module: Module) -> None:
    """An authoritative binding: the function (its follow-ups), the listed request_publishers and, with
    store notifications, the Healthcare service agents; any other topic-level publisher is removed."""
    on_request_topic = [
        (rtype, name, body)
        for rtype, name, body in _all_iam_members(module)
        if "google_pubsub_topic.request." in _refs(body.get("topic", ""))
    ]
    assert [(rtype, name) for rtype, name, _ in on_request_topic] == [
        ("google_pubsub_topic_iam_binding", "request_publishers")
    ]
    binding = module.resource("google_pubsub_topic_iam_binding", "request_publishers")
    assert binding["role"] == "roles/pubsub.publisher"
    members = _refs(binding["members"])
    assert "local.runtime_member" in members
    assert "var.request_publishers" in members
    assert "data.google_project.dicom_store" in members and "gcp-sa-healthcare" in members
    assert module.default("request_publishers") == []


@pytest.mark.parametrize(
    ("member", "valid"),
    [
        ("serviceAccount:producer@my-project.iam.gserviceaccount.com", True),
        ("group:imaging-ops@example.org", True),
        ("user:alice@example.org", True),
        ("allUsers", False),
        ("allAuthenticatedUsers", False),
        ("domain:example.org", False),
        ("producer@my-project.iam.gserviceaccount.com", False),
        ("serviceAccount:", False),
    ],
)
def test_request_publishers_are_named_principals(module: Module, member: str, valid: bool) -> None:
    assert bool(_regex_of(module, "request_publishers").match(member)) is valid


# ---------------------------------------------------------------------------
# The continuation key
# ---------------------------------------------------------------------------


def test_continuation_keys_are_a_generated_secret(module: Module) -> None:
    passwords = module.resource("random_password", "continuation_key")
    assert passwords["for_each"] == "${toset(var.continuation_key_ids)}"
    assert passwords["length"] >= 32
    assert passwords["special"] is False  # no separator (comma, space, =) inside a secret
    version = module.resource("google_secret_manager_secret_version", "continuation_keys")
    assert "google_secret_manager_secret.continuation_keys.id" in version["secret"]
    data = _refs(version["secret_data"])
    assert "var.continuation_key_ids" in data and "random_password.continuation_key" in data
    assert _block(version, "lifecycle")["create_before_destroy"] is True
    assert module.default("continuation_key_ids") == ["k1"]


@pytest.mark.parametrize(
    ("key_id", "valid"), [("k1", True), ("2025-q3_b", True), ("k.1", False), ("", False)]
)
def test_continuation_key_ids_validation(module: Module, key_id: str, valid: bool) -> None:
    assert bool(_regex_of(module, "continuation_key_ids").match(key_id)) is valid


def test_only_the_function_reads_the_secrets(module: Module) -> None:
    grants = {name: (rtype, body) for rtype, name, body in _all_iam_members(module) if "secret" in rtype}
    assert set(grants) == {"runtime_continuation_keys", "runtime_dicomweb_secret"}
    for rtype, body in grants.values():
        assert rtype == "google_secret_manager_secret_iam_member"
        assert body["role"] == "roles/secretmanager.secretAccessor"
        assert body["member"] == "${local.runtime_member}"
    keys = grants["runtime_continuation_keys"][1]
    assert "google_secret_manager_secret.continuation_keys.secret_id" in keys["secret_id"]
    dicomweb = grants["runtime_dicomweb_secret"][1]
    assert dicomweb["secret_id"] == "${var.dicomweb_secret_id}"  # that one secret, never the project's
    assert dicomweb["count"] == "${local.dicomweb_secret_enabled ? 1 : 0}"


def test_the_function_mounts_the_continuation_keys_as_a_file(module: Module) -> None:
    fn = module.resource("google_cloudfunctions2_function", "worker")
    volume = _block(_block(fn, "service_config"), "secret_volumes")
    assert "google_secret_manager_secret.continuation_keys.secret_id" in volume["secret"]
    assert volume["mount_path"] == "${local.continuation_keys_dir}"
    version = _block(volume, "versions")
    # Pinned: a new key set is a new version, which redeploys the function.
    assert "google_secret_manager_secret_version.continuation_keys.version" in version["version"]
    assert version["path"] == "${local.continuation_keys_file}"
    env = module.locals["module_environment"]
    assert env["CONTINUATION_KEYS_FILE"] == "${local.continuation_keys_dir}/${local.continuation_keys_file}"
    depends = _refs(fn["depends_on"])
    assert "google_secret_manager_secret_iam_member.runtime_continuation_keys" in depends
    assert "google_pubsub_topic_iam_binding.request_publishers" in depends


def test_push_invoker_may_only_invoke_the_function(module: Module) -> None:
    grants = [(t, b) for t, _, b in _all_iam_members(module) if b["member"] == "${local.invoker_member}"]
    assert len(grants) == 1
    rtype, body = grants[0]
    assert rtype == "google_cloud_run_v2_service_iam_member"
    assert body["role"] == "roles/run.invoker"
    assert "google_cloudfunctions2_function.worker.name" in body["name"]


# ---------------------------------------------------------------------------
# Storage
# ---------------------------------------------------------------------------


def test_destination_bucket_is_locked_down(module: Module) -> None:
    bucket = module.resource("google_storage_bucket", "destination")
    assert "var.create_destination_bucket" in bucket["count"]
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert bucket["force_destroy"] is False
    assert _block(bucket, "versioning")["enabled"] == "${var.bucket_versioning}"
    rules = _dynamic_blocks(bucket, "lifecycle_rule")
    archive = [r for r in rules if "var.bucket_archive_after_days" in r["for_each"]]
    assert len(archive) == 1
    action = _block(_block(archive[0], "content"), "action")
    assert action == {"type": "SetStorageClass", "storage_class": "ARCHIVE"}
    assert module.default("bucket_archive_after_days") is None


def test_every_bucket_is_private(module: Module) -> None:
    for name, bucket in module.of_type("google_storage_bucket").items():
        assert bucket["uniform_bucket_level_access"] is True, name
        assert bucket["public_access_prevention"] == "enforced", name


def test_bucket_grants_are_object_level_only(module: Module) -> None:
    grants = module.of_type("google_storage_bucket_iam_member")
    assert {b["role"] for b in grants.values()} == {
        "roles/storage.objectCreator",
        "roles/storage.objectViewer",
    }
    runtime = sorted(b["role"] for b in grants.values() if b["member"] == "${local.runtime_member}")
    assert runtime == ["roles/storage.objectCreator", "roles/storage.objectViewer"]  # create and read only


# ---------------------------------------------------------------------------
# IAM
# ---------------------------------------------------------------------------


def test_every_granted_role_is_allowlisted(module: Module) -> None:
    members = list(_all_iam_members(module))
    assert members, "no IAM grants found"
    for rtype, name, body in members:
        where = f"{rtype}.{name}"
        assert not FORBIDDEN_IAM_TYPES.match(rtype), f"{where}: no project/folder/org-level grants"
        assert rtype.endswith("_iam_member") or (rtype, name) in AUTHORITATIVE_GRANTS, (
            f"{where}: use non-authoritative *_iam_member resources"
        )
        role = body["role"]
        assert "${" not in role, f"{where}: the role must be a literal so it can be audited"
        assert role in ROLE_ALLOWLIST, f"{where}: role {role} is not allowlisted"
        assert role not in ("roles/owner", "roles/editor")
        assert "admin" not in role.lower(), f"{where}: {role}"
        assert "allUsers" not in body["member"]
        assert "allAuthenticatedUsers" not in body["member"]


def test_no_role_string_outside_the_allowlist(module: Module, example: Module) -> None:
    for mod in (module, example):
        for role in re.findall(r"roles/[A-Za-z0-9_.]+", mod.text):
            assert role in ROLE_ALLOWLIST, f"{role} appears in {mod.directory}"
        assert "allUsers" not in mod.text
        assert "allAuthenticatedUsers" not in mod.text


def test_dicom_store_grants(module: Module) -> None:
    grants = module.of_type("google_healthcare_dicom_store_iam_member")
    by_role = {body["role"]: body for body in grants.values()}
    assert set(by_role) == {"roles/healthcare.dicomViewer", "roles/healthcare.dicomEditor"}
    assert by_role["roles/healthcare.dicomViewer"]["for_each"] == "${local.dicom_store_ids}"
    editor = by_role["roles/healthcare.dicomEditor"]
    condition = _refs(editor.get("for_each", editor.get("count")))
    assert "var.delete_enabled" in condition, "dicomEditor must be granted only when delete_enabled"
    assert "var.restore_enabled" in condition, "restore's STOW-RS needs dicomEditor (dicomWebWrite)"
    assert "var.tier_enabled" in condition, "setBlobStorageSettings needs dicomEditor (dicomWebWrite)"


def test_the_healthcare_agent_reads_the_archive_only_for_restore_by_import(module: Module) -> None:
    grant = module.resource("google_storage_bucket_iam_member", "healthcare_agent_import_reader")
    assert grant["role"] == "roles/storage.objectViewer"
    assert "var.restore_import_enabled" in _refs(grant["for_each"])
    assert "gcp-sa-healthcare" in grant["member"]
    assert module.default("restore_import_enabled") is False


def test_the_healthcare_agent_reads_the_filter_files_only_when_tiering_with_the_same_grant(
    module: Module,
) -> None:
    readers = [
        body
        for body in module.of_type("google_storage_bucket_iam_member").values()
        if "gcp-sa-healthcare" in body["member"]
    ]
    assert len(readers) == 1, "one grant serves restore by import and tier"
    (grant,) = readers
    assert grant["role"] == "roles/storage.objectViewer"
    assert "var.restore_import_enabled" in _refs(grant["for_each"])
    assert "var.tier_enabled" in _refs(grant["for_each"])
    assert module.default("tier_enabled") is False


def test_every_delete_capable_grant_is_conditional(module: Module) -> None:
    """dicomEditor (and the dataset-level grant used to poll deletes) only with delete_enabled."""
    for rtype, name, body in _all_iam_members(module):
        if body["role"] in ("roles/healthcare.dicomEditor", "roles/healthcare.datasetViewer"):
            condition = _refs(body.get("for_each", body.get("count")))
            assert "var.delete_enabled" in condition, f"{rtype}.{name}"


def test_service_accounts(module: Module) -> None:
    accounts = module.of_type("google_service_account")
    assert {"runtime", "invoker"} <= set(accounts)


# ---------------------------------------------------------------------------
# Variables and outputs
# ---------------------------------------------------------------------------


def test_every_variable_has_description_and_type(module: Module, example: Module) -> None:
    for mod in (module, example):
        for name, body in mod.variables.items():
            assert str(body.get("description", "")).strip(), f"variable {name} has no description"
            assert body.get("type"), f"variable {name} has no type"


def test_every_output_has_description(module: Module) -> None:
    for name, body in module.outputs.items():
        assert str(body.get("description", "")).strip(), f"output {name} has no description"


def test_expected_outputs(module: Module) -> None:
    expected = {
        "function_name",
        "function_uri",
        "request_topic_id",
        "completion_topic_id",
        "dead_letter_topic_id",
        "push_subscription_id",
        "dead_letter_subscription_id",
        "service_account_email",
        "bucket_name",
    }
    assert expected <= set(module.outputs)


@pytest.mark.parametrize(
    "variable",
    [
        "dicom_store_ids",
        "region",
        "max_delivery_attempts",
        "bucket_archive_after_days",
        "project_id",
        "request_publishers",
        "continuation_key_ids",
    ],
)
def test_key_variables_are_validated(module: Module, variable: str) -> None:
    assert module.variables[variable].get("validation"), f"variable {variable} has no validation"


def _regex_of(module: Module, variable: str) -> re.Pattern[str]:
    for validation in module.variables[variable]["validation"]:
        found = re.search(r'regex\("((?:[^"\\]|\\.)*)"', validation["condition"])
        if found:
            # HCL string escapes (\\ -> \) then RE2 syntax, which Python accepts here.
            return re.compile(found.group(1).replace("\\\\", "\\"))
    raise AssertionError(f"no regex validation on {variable}")


@pytest.mark.parametrize(
    ("store_id", "valid"),
    [
        ("projects/p-1/locations/europe-west4/datasets/imaging/dicomStores/archive", True),
        ("projects/p/locations/us-central1/datasets/d_1/dicomStores/s-2", True),
        ("projects/p/locations/us-central1/datasets/d/dicomStores/", False),
        ("projects/p/locations/us-central1/datasets/d", False),
        ("p/us-central1/d/s", False),
        ("projects/p/locations/l/datasets/d/dicomStores/s/dicomWeb", False),
    ],
)
def test_dicom_store_id_validation(module: Module, store_id: str, valid: bool) -> None:
    assert bool(_regex_of(module, "dicom_store_ids").match(store_id)) is valid


def test_lifecycle_days_validation(module: Module) -> None:
    condition = module.variables["bucket_archive_after_days"]["validation"][0]["condition"]
    assert "== null" in condition
    assert ">= 1" in condition


# ---------------------------------------------------------------------------
# Example, README, formatting
# ---------------------------------------------------------------------------


def test_example_uses_the_module_with_every_required_input(module: Module, example: Module) -> None:
    assert len(example.modules) == 1
    call = next(iter(example.modules.values()))
    assert call["source"] == "../.."
    required = {name for name, body in module.variables.items() if "default" not in body}
    missing = required - set(call)
    assert not missing, f"the example does not pass {missing}"
    unknown = set(call) - set(module.variables) - {"source", "providers", "depends_on", "count", "for_each"}
    assert not unknown, f"the example passes unknown inputs {unknown}"


def test_readme_documents_the_design() -> None:
    readme = (MODULE_DIR / "README.md").read_text(encoding="utf-8")
    for needle in (
        "dead-letter",
        "dead_letter_policy",
        "dicomEditor",
        "operations",
        "check.sh",
        ".gcloudignore",
        "audit_table_schema.json",
        "drop_unknown_fields",
        "notification_channels",
        "dashboard.json.tftpl",
        "Rotation",
    ):
        assert needle in readme, f"README.md does not mention {needle}"


def test_terraform_fmt(tmp_path: Path) -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform binary not on PATH")
    config = tmp_path / "terraformrc"
    config.write_text("", encoding="utf-8")
    env = {**os.environ, "TF_CLI_CONFIG_FILE": str(config), "TF_IN_AUTOMATION": "1"}
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-no-color", str(MODULE_DIR)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"terraform fmt -check failed on:\n{result.stdout}{result.stderr}"


# ---------------------------------------------------------------------------
# Sweep rules: Cloud Scheduler jobs publishing sweeps onto the request topic
# ---------------------------------------------------------------------------


def test_one_scheduler_job_per_sweep_rule_publishes_onto_the_request_topic(module: Module) -> None:
    job = module.resource("google_cloud_scheduler_job", "sweep")
    assert "var.sweep_rules" in _refs(job["for_each"])
    assert job["schedule"] == "${each.value.schedule}"
    assert job["time_zone"] == "${each.value.time_zone}"
    target = _block(job, "pubsub_target")
    assert target["topic_name"] == "${google_pubsub_topic.request.id}"
    assert "base64encode(jsonencode(local.sweep_requests[each.key]))" in _refs(target["data"])
    assert target["attributes"] == {"action": "sweep"}
    assert module.default("sweep_rules") == []


def test_a_scheduled_sweep_carries_no_follow_up_field_and_no_request_id(module: Module) -> None:
    """A scheduler cannot sign: the request it publishes holds only what an unsigned sweep may hold."""
    requests = _refs(module.locals["sweep_requests"])
    assert '"sweep"' in requests or "'sweep'" in requests or "sweep" in requests
    for field in ("cursor", "published", "continuation", "signature", "requestId"):
        assert field not in requests, field
    assert "rule.filters" in requests and "rule.then.action" in requests and "rule.store" in requests


def test_a_scheduled_sweep_request_parses_unsigned() -> None:
    """The body the module's local builds (nulls left out) is a sweep the worker accepts without keys."""
    from worker.request import Message as WorkerMessage
    from worker.sweep_request import SweepRequest, parse_message

    store = "projects/my-project/locations/europe-west4/datasets/d/dicomStores/s"
    body = {
        "action": "sweep",
        "filters": {"modality": "CT", "studyDate": "-20191231"},
        "then": {"action": "archive", "destination": "gs://bucket/archive", "options": {"mode": "series"}},
        "store": store,
    }
    request = parse_message(WorkerMessage(json.dumps(body).encode(), {"action": "sweep"}, "123456"))
    assert isinstance(request, SweepRequest)
    assert request.request_id == "123456"


def test_the_scheduler_service_agent_publishes_requests_only_with_sweep_rules(module: Module) -> None:
    members = _refs(module.resource("google_pubsub_topic_iam_binding", "request_publishers")["members"])
    assert "local.scheduler_service_agent" in members and "var.sweep_rules" in members
    assert "gcp-sa-cloudscheduler.iam.gserviceaccount.com" in _refs(module.locals["scheduler_service_agent"])
    assert "cloudscheduler.googleapis.com" in _refs(module.locals["apis"])
    assert "var.sweep_rules" in _refs(module.locals["apis"])


def test_sweep_rules_refuse_a_nested_sweep_and_bad_filters(module: Module) -> None:
    validations = _refs(module.variables["sweep_rules"]["validation"])
    assert "never sweep" in validations
    assert '"search", "retrieve", "delete", "archive", "restore", "verify", "tier"' in validations
    assert "filters.studyDate" in validations and "five-field cron" in validations


# ---------------------------------------------------------------------------
# Audit trail: a BigQuery subscription on the completion topic (audit.tf)
# ---------------------------------------------------------------------------


def test_the_audit_table_is_the_generated_schema_partitioned_and_protected(module: Module) -> None:
    assert module.default("audit_enabled") is True
    dataset = module.resource("google_bigquery_dataset", "audit")
    assert dataset["count"] == "${local.audit_count}"
    assert dataset["delete_contents_on_destroy"] is False
    table = module.resource("google_bigquery_table", "audit_events")
    assert table["count"] == "${local.audit_count}"
    assert table["schema"] == '${file("${path.module}/audit_table_schema.json")}'
    assert (MODULE_DIR / "audit_table_schema.json").is_file()
    assert table["deletion_protection"] is True
    partitioning = _block(table, "time_partitioning")
    assert (partitioning["type"], partitioning["field"]) == ("DAY", "publish_time")
    assert "var.audit_retention_days" in _refs(partitioning["expiration_ms"])
    assert module.default("audit_retention_days") is None  # kept for ever unless the deployer says
    assert "var.audit_enabled" in _refs(module.locals["audit_count"])
    assert "bigquery.googleapis.com" in _refs(module.locals["apis"])


def test_a_bigquery_subscription_writes_every_completion_event_into_the_table(module: Module) -> None:
    subscription = module.resource("google_pubsub_subscription", "audit")
    assert subscription["topic"] == "${google_pubsub_topic.completion.id}"
    assert "push_config" not in subscription
    config = _block(subscription, "bigquery_config")
    assert "google_bigquery_table.audit_events[0].table_id" in config["table"]
    assert config["use_table_schema"] is True  # the event's fields are the columns
    assert config["write_metadata"] is True  # message_id, publish_time, attributes beside them
    assert config["drop_unknown_fields"] is False  # never a truncated row: a misfit is dead-lettered
    dead_letter = _block(subscription, "dead_letter_policy")
    assert dead_letter["dead_letter_topic"] == "${google_pubsub_topic.audit_dead_letter[0].id}"
    assert dead_letter["max_delivery_attempts"] == "${var.max_delivery_attempts}"
    assert _block(subscription, "expiration_policy")["ttl"] == ""
    pull = module.resource("google_pubsub_subscription", "audit_dead_letter")
    assert pull["topic"] == "${google_pubsub_topic.audit_dead_letter[0].id}"
    assert pull["message_retention_duration"] == "${var.dead_letter_retention}"
    depends = _refs(subscription["depends_on"])
    assert "google_bigquery_table_iam_member.audit_writer" in depends
    assert "google_pubsub_topic_iam_member.audit_dead_letter_publisher" in depends


def test_the_pubsub_agent_may_write_the_audit_table_only(module: Module) -> None:
    bigquery = [(t, n, b) for t, n, b in _all_iam_members(module) if t.startswith("google_bigquery_")]
    assert [(t, n) for t, n, _ in bigquery] == [("google_bigquery_table_iam_member", "audit_writer")]
    (_, _, writer) = bigquery[0]
    assert writer["role"] == "roles/bigquery.dataEditor"
    assert writer["member"] == "${local.pubsub_service_agent}"
    assert "google_bigquery_table.audit_events[0].table_id" in writer["table_id"]
    publisher = module.resource("google_pubsub_topic_iam_member", "audit_dead_letter_publisher")
    assert publisher["topic"] == "${google_pubsub_topic.audit_dead_letter[0].name}"
    assert (publisher["role"], publisher["member"]) == (
        "roles/pubsub.publisher",
        "${local.pubsub_service_agent}",
    )
    subscriber = module.resource("google_pubsub_subscription_iam_member", "audit_dead_letter_subscriber")
    assert subscriber["subscription"] == "${google_pubsub_subscription.audit[0].name}"
    assert subscriber["role"] == "roles/pubsub.subscriber"
    for _, _, body in _all_iam_members(module):  # nobody else is given anything on the audit resources
        if "audit" in _refs(body.get("topic", "")) + _refs(body.get("subscription", "")):
            assert body["member"] == "${local.pubsub_service_agent}"


# ---------------------------------------------------------------------------
# Monitoring: log-based metrics, alert policies, the dashboard (monitoring.tf)
# ---------------------------------------------------------------------------

_METRICS = ("completion_events", "instances", "bytes", "empty_sweeps")
_ALERTS = ("dead_letter_backlog", "failed_events", "function_errors", "empty_sweep", "request_backlog_age")


def _extracted_fields(module: Module) -> set[str]:
    """Every jsonPayload field the log-based metrics read (filters, label and value extractors)."""
    text = _refs([module.resource("google_logging_metric", name) for name in _METRICS])
    return set(re.findall(r"jsonPayload\.([A-Za-z]+)", text)) - {"message"}


def test_the_log_based_metrics_read_the_completion_event_log_line(module: Module) -> None:
    assert module.default("monitoring_enabled") is True
    base = _refs(module.locals["completion_log_filter"])
    assert (
        'jsonPayload.message=\\"completion event\\"' in base
        or 'jsonPayload.message="completion event"' in base
    )
    assert "resource.labels.service_name" in base and "cloud_run_revision" in base
    for name in _METRICS:
        metric = module.resource("google_logging_metric", name)
        assert metric["count"] == "${local.monitoring_count}"
        assert "local.completion_log_filter" in metric["filter"], name
    events = module.resource("google_logging_metric", "completion_events")
    assert events["label_extractors"] == {
        "action": "EXTRACT(jsonPayload.action)",
        "status": "EXTRACT(jsonPayload.status)",
        "error_code": "EXTRACT(jsonPayload.errorCode)",
    }
    for name, field in (("instances", "instanceCount"), ("bytes", "bytes")):
        metric = module.resource("google_logging_metric", name)
        assert metric["value_extractor"] == f"EXTRACT(jsonPayload.{field})"
        assert _block(metric, "metric_descriptor")["value_type"] == "DISTRIBUTION"
    assert "jsonPayload.published=0" in module.resource("google_logging_metric", "empty_sweeps")["filter"]


def test_the_metrics_read_only_fields_the_worker_logs() -> None:
    """A renamed field in CompletionEvent.log_fields would leave a metric silently at zero."""
    from worker.errors import Code, PermanentError
    from worker.events import CompletionEvent

    logged = set()
    for event in (
        CompletionEvent.succeeded("r", "archive", None, {"instanceCount": 1, "bytes": 2}),
        CompletionEvent.succeeded("r", "sweep", None, {"published": 0}),
        CompletionEvent.failed("r", "delete", None, PermanentError(Code.DELETE_FAILED, "x")),
    ):
        logged |= set(event.log_fields())
    assert _extracted_fields(Module(MODULE_DIR)) <= logged


def test_every_alert_policy_notifies_the_given_channels(module: Module) -> None:
    assert module.default("notification_channels") == []
    for name in _ALERTS:
        policy = module.resource("google_monitoring_alert_policy", name)
        assert policy["count"] == "${local.monitoring_count}"
        assert policy["notification_channels"] == "${var.notification_channels}", name
        assert _block(policy, "documentation")["content"], name
    backlog = _dynamic_blocks(
        module.resource("google_monitoring_alert_policy", "dead_letter_backlog"), "conditions"
    )
    assert len(backlog) == 1
    watched = _refs(backlog[0]["for_each"])
    assert "google_pubsub_subscription.dead_letter.name" in watched
    assert "google_pubsub_subscription.audit_dead_letter[0].name" in watched
    failed = _block(
        _block(module.resource("google_monitoring_alert_policy", "failed_events"), "conditions"),
        "condition_threshold",
    )
    assert 'metric.labels.status=\\"failed\\"' in failed["filter"] or 'status="failed"' in failed["filter"]
    assert "denominator_filter" in failed  # a share of all events, not a count
    assert failed["threshold_value"] == "${var.alert_failed_event_ratio}"
    errors = _block(
        _block(module.resource("google_monitoring_alert_policy", "function_errors"), "conditions"),
        "condition_threshold",
    )
    assert "run.googleapis.com/request_count" in errors["filter"] and "5xx" in errors["filter"]
    sweep = _block(
        _block(module.resource("google_monitoring_alert_policy", "empty_sweep"), "conditions"),
        "condition_threshold",
    )
    assert "google_logging_metric.empty_sweeps[0].name" in sweep["filter"]
    age = _block(
        _block(module.resource("google_monitoring_alert_policy", "request_backlog_age"), "conditions"),
        "condition_threshold",
    )
    assert "oldest_unacked_message_age" in age["filter"]
    assert "google_pubsub_subscription.push.name" in age["filter"]
    assert age["threshold_value"] == "${var.alert_backlog_age_hours * 3600}"
    assert module.default("alert_backlog_age_hours") * 3600 < 604800  # before the subscription drops it


def test_the_dashboard_renders_to_json_showing_every_metric_and_alert(module: Module) -> None:
    dashboard = module.resource("google_monitoring_dashboard", "worker")
    call = _refs(dashboard["dashboard_json"])
    assert "dashboard.json.tftpl" in call
    template = (MODULE_DIR / "dashboard.json.tftpl").read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{([a-z_]+)\}", template))
    passed = set(re.findall(r"([a-z_]+)\s*=", call.split("dashboard.json.tftpl", 1)[1]))
    assert used == passed, f"template variables {used ^ passed} are used but not passed, or passed but unused"
    rendered = json.loads(re.sub(r"\$\{([a-z_]+)\}", r"\1-value", template))
    widgets = rendered["gridLayout"]["widgets"]
    queries = json.dumps(widgets)
    for variable in ("events_metric", "instances_metric", "bytes_metric", "empty_sweeps_metric"):
        assert f"{variable}-value" in queries, variable
    alerts = [w["alertChart"]["name"] for w in widgets if "alertChart" in w]
    assert sorted(alerts) == sorted(
        f"{a}_alert-value"
        for a in ("dead_letter", "failed_events", "function_errors", "empty_sweep", "backlog_age")
    )
    for variable in ("dead_letter_pull", "audit_dead_letter_pull", "push_subscription"):
        assert f"{variable}-value" in queries, variable
    for alert in _ALERTS:
        assert f"google_monitoring_alert_policy.{alert}[0].name" in call


# ---------------------------------------------------------------------------
# Another DICOMweb server: its password or token mounted from Secret Manager
# ---------------------------------------------------------------------------


def test_the_dicomweb_secret_is_a_mounted_file_never_a_value(module: Module) -> None:
    for name in ("dicomweb_url", "dicomweb_username", "dicomweb_secret_id"):
        assert module.default(name) is None, name
    assert module.default("dicomweb_auth") == "google"
    assert module.default("dicomweb_secret_version") == "latest"
    enabled = _refs(module.locals["dicomweb_secret_enabled"])
    assert "var.dicomweb_url" in enabled and '"basic", "bearer"' in enabled
    fn = module.resource("google_cloudfunctions2_function", "worker")
    (volume,) = _dynamic_blocks(_block(fn, "service_config"), "secret_volumes")
    assert "local.dicomweb_secret_enabled" in volume["for_each"]
    content = _block(volume, "content")
    assert content["mount_path"] == "${local.dicomweb_secret_dir}"
    assert content["mount_path"] != _block(_block(fn, "service_config"), "secret_volumes")["mount_path"]
    version = _block(content, "versions")
    assert version["version"] == "${var.dicomweb_secret_version}"
    assert version["path"] == "${local.dicomweb_secret_file}"
    environment = _refs(module.locals["dicomweb_environment"])
    for setting in (
        "DICOMWEB_URL",
        "DICOMWEB_AUTH",
        "DICOMWEB_USERNAME",
        "DICOMWEB_TOKEN_FILE",
        "DICOMWEB_PASSWORD_FILE",
    ):
        assert setting in environment, setting
    assert "local.dicomweb_secret_dir" in environment
    # No variable carries the secret's value, and no secret version is created from one.
    assert not [name for name in module.variables if re.search(r"password|_token$|secret$", name)]
    assert set(module.of_type("google_secret_manager_secret_version")) == {"continuation_keys"}
    assert "local.dicomweb_environment" in _refs(module.locals["function_environment"])
    assert "google_secret_manager_secret_iam_member.runtime_dicomweb_secret" in _refs(fn["depends_on"])


def test_the_worker_reads_the_mounted_dicomweb_secret(tmp_path: Path) -> None:
    """The files the module mounts are what Settings.from_env reads (DICOMWEB_*_FILE)."""
    from worker.settings import Auth, Settings

    (tmp_path / "password").write_text("s3cret\n", encoding="utf-8")
    (tmp_path / "token").write_text("t0ken\n", encoding="utf-8")
    url = "https://pacs.example.org/dicom-web"
    basic = Settings.from_env(
        {
            "DICOMWEB_URL": url,
            "DICOMWEB_AUTH": "basic",
            "DICOMWEB_USERNAME": "worker",
            "DICOMWEB_PASSWORD_FILE": str(tmp_path / "password"),
        }
    )
    bearer = Settings.from_env(
        {"DICOMWEB_URL": url, "DICOMWEB_AUTH": "bearer", "DICOMWEB_TOKEN_FILE": str(tmp_path / "token")}
    )
    assert (basic.dicomweb_auth, basic.dicomweb_secret) == (Auth.BASIC, "s3cret")
    assert (bearer.dicomweb_auth, bearer.dicomweb_secret) == (Auth.BEARER, "t0ken")


def test_dicomweb_settings_are_validated(module: Module) -> None:
    assert _regex_of(module, "dicomweb_secret_id").match("pacs-password")
    assert not _regex_of(module, "dicomweb_secret_id").match("projects/p/secrets/s")
    assert _regex_of(module, "dicomweb_secret_version").match("latest")
    assert _regex_of(module, "dicomweb_secret_version").match("3")
    assert not _regex_of(module, "dicomweb_secret_version").match("0")
    grant = module.resource("google_secret_manager_secret_iam_member", "runtime_dicomweb_secret")
    conditions = _refs(_block(grant, "lifecycle")["precondition"])
    assert "var.dicomweb_secret_id != null" in conditions and "var.dicomweb_username != null" in conditions
    stores = _refs(module.locals["module_environment"]["ALLOWED_DICOM_STORES"])
    assert '"dicomweb"' in stores and "var.dicomweb_url" in stores
