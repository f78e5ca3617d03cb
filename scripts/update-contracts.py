#!/usr/bin/env python3
"""Regenerate the trimmed Google discovery documents in tests/contracts/.

The simulated Cloud Run / Cloud Monitoring servers used by the integration
tests must answer with bodies that validate against the official discovery
documents.  Those documents ship inside the PyPI package
google-api-python-client; this script fetches a pinned version with
`pip download`, keeps only the schemas and methods shiftgate uses, strips the
prose, and writes deterministic JSON (sorted keys, 2-space indent).

Usage:  python3 scripts/update-contracts.py [--version X.Y.Z] [--wheel PATH]

Standard library only (plus the `pip` client).  Re-runnable: it overwrites the
outputs and prints what it wrote.
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import zipfile

PACKAGE = "google-api-python-client"
DEFAULT_VERSION = "2.202.0"
DOC_DIR = "googleapiclient/discovery_cache/documents/"

# discovery file -> (schema roots, methods as resource-path.method relative to the API)
CONTRACTS = {
    "run.v2.json": (
        [
            "GoogleCloudRunV2Service",
            "GoogleCloudRunV2Revision",
            "GoogleCloudRunV2ListRevisionsResponse",
            "GoogleLongrunningOperation",
            "GoogleLongrunningWaitOperationRequest",
            "GoogleRpcStatus",
            "GoogleCloudRunV2RunJobRequest",
            "GoogleCloudRunV2Execution",
        ],
        [
            "projects.locations.jobs.run",
            "projects.locations.jobs.executions.get",
            "projects.locations.services.get",
            "projects.locations.services.patch",
            "projects.locations.services.revisions.get",
            "projects.locations.services.revisions.list",
            "projects.locations.operations.get",
            "projects.locations.operations.wait",
        ],
    ),
    "monitoring.v3.json": (
        ["ListTimeSeriesResponse", "Status"],
        ["projects.timeSeries.list"],
    ),
    "logging.v2.json": (
        ["ListLogEntriesRequest", "ListLogEntriesResponse", "Status"],
        ["entries.list"],
    ),
    "storage.v1.json": (
        ["RewriteResponse", "Object"],
        ["objects.rewrite"],
    ),
    "iamcredentials.v1.json": (
        [
            "GenerateAccessTokenRequest",
            "GenerateAccessTokenResponse",
            "GenerateIdTokenRequest",
            "GenerateIdTokenResponse",
        ],
        [
            "projects.serviceAccounts.generateAccessToken",
            "projects.serviceAccounts.generateIdToken",
        ],
    ),
}

# Keys kept on a schema (or on a property / items / additionalProperties node).
# Everything else -- description, enumDescriptions, enumDeprecated, ... -- is prose.
SCHEMA_KEYS = {
    "id",
    "type",
    "format",
    "$ref",
    "enum",
    "items",
    "properties",
    "additionalProperties",
    "readOnly",
    "deprecated",
}
PARAM_KEYS = {"type", "location", "repeated", "enum", "format", "required", "pattern"}
METHOD_KEYS = {"id", "path", "flatPath", "httpMethod", "parameterOrder"}


def fetch_wheel(version, dest):
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
        "--disable-pip-version-check", "-d", dest, f"{PACKAGE}=={version}",
    ]
    print("+", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    wheels = glob.glob(os.path.join(dest, "*.whl"))
    if len(wheels) != 1:
        sys.exit(f"expected exactly one wheel in {dest}, found {wheels}")
    return wheels[0]


def clean_schema(node):
    """Return a copy of a schema node without prose keys, recursing into children."""
    out = {}
    for key, value in node.items():
        if key not in SCHEMA_KEYS:
            continue
        if key == "properties":
            value = {name: clean_schema(prop) for name, prop in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            value = clean_schema(value)
        out[key] = value
    return out


def refs_of(node):
    """Yield every $ref reachable inside one schema node (not across refs)."""
    if not isinstance(node, dict):
        return
    if "$ref" in node:
        yield node["$ref"]
    for prop in node.get("properties", {}).values():
        yield from refs_of(prop)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            yield from refs_of(node[key])


def reachable(schemas, roots):
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if name not in schemas:
            sys.exit(f"schema {name!r} not found in discovery document")
        seen.add(name)
        todo.extend(refs_of(schemas[name]))
    return seen


def find_method(doc, dotted):
    *resources, method = dotted.split(".")
    node = doc
    for res in resources:
        node = node["resources"][res]
    return node["methods"][method]


def summarize_method(m):
    out = {k: m[k] for k in METHOD_KEYS if k in m}
    out["parameters"] = {
        name: {k: v for k, v in p.items() if k in PARAM_KEYS}
        for name, p in m.get("parameters", {}).items()
    }
    for key in ("request", "response"):
        if key in m:
            out[key] = {"$ref": m[key]["$ref"]}
    return out


def trim(doc, roots, methods):
    method_summaries = {}
    for dotted in methods:
        m = find_method(doc, dotted)
        method_summaries[m["id"]] = summarize_method(m)
    # Method request/response schemas are roots too (they are already listed,
    # but this keeps the file self-consistent if the lists drift).
    all_roots = list(roots)
    for m in method_summaries.values():
        for key in ("request", "response"):
            if key in m:
                all_roots.append(m[key]["$ref"])
    keep = reachable(doc["schemas"], all_roots)
    return {
        "name": doc["name"],
        "version": doc["version"],
        "revision": doc["revision"],
        "schemas": {name: clean_schema(doc["schemas"][name]) for name in sorted(keep)},
        "methods": method_summaries,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--version", default=DEFAULT_VERSION, help=f"{PACKAGE} version")
    ap.add_argument("--wheel", help="use this already-downloaded wheel instead of pip download")
    ap.add_argument(
        "--out",
        default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "contracts"),
        help="output directory (default: tests/contracts)",
    )
    args = ap.parse_args()
    out_dir = os.path.normpath(args.out)
    os.makedirs(out_dir, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="shiftgate-contracts-") as tmp:
        wheel = args.wheel or fetch_wheel(args.version, tmp)
        with zipfile.ZipFile(wheel) as zf:
            for filename, (roots, methods) in sorted(CONTRACTS.items()):
                doc = json.loads(zf.read(DOC_DIR + filename))
                trimmed = trim(doc, roots, methods)
                path = os.path.join(out_dir, filename)
                with open(path, "w", encoding="utf-8") as f:
                    json.dump(trimmed, f, indent=2, sort_keys=True, ensure_ascii=False)
                    f.write("\n")
                print(
                    f"wrote {os.path.relpath(path)}: {trimmed['name']} {trimmed['version']} "
                    f"revision {trimmed['revision']}, {len(trimmed['schemas'])} schemas, "
                    f"{len(trimmed['methods'])} methods"
                )


if __name__ == "__main__":
    main()
