#!/usr/bin/env python3
"""Regenerate tests/contracts/github.json: the subset of GitHub's official REST
OpenAPI description that shiftgate's dispatch and incident commands and rollout's
GitHub deployment use.

Source: the npm package @octokit/openapi (generated/api.github.com.json,
OpenAPI 3.0.3). This script runs `npm pack` for a pinned version into a temp
dir, keeps only the operations listed below and the components they reference
(transitively), strips prose (description, summary, examples, externalDocs,
x-github metadata) and writes deterministic JSON (sorted keys, 2-space indent).

Usage:  python3 scripts/update-github-contract.py [--version X.Y.Z] [--tarball PATH]
Standard library plus the `npm` client.
"""

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile

PACKAGE = "@octokit/openapi"
DEFAULT_VERSION = "23.0.2"
MEMBER = "package/generated/api.github.com.json"
OUTPUT = os.path.join(os.path.dirname(__file__), "..", "tests", "contracts", "github.json")

# (path, method) pairs shiftgate calls.
OPERATIONS = [
    ("/repos/{owner}/{repo}/actions/workflows", "get"),
    ("/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches", "post"),
    ("/repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs", "get"),
    ("/repos/{owner}/{repo}/actions/runs/{run_id}", "get"),
    ("/repos/{owner}/{repo}/actions/runs/{run_id}/jobs", "get"),
    ("/repos/{owner}/{repo}/actions/runs/{run_id}/pending_deployments", "get"),
    ("/repos/{owner}/{repo}/actions/runs/{run_id}/cancel", "post"),
    ("/repos/{owner}/{repo}/contents/{path}", "get"),
    ("/repos/{owner}/{repo}/issues", "get"),
    ("/repos/{owner}/{repo}/issues", "post"),
    ("/repos/{owner}/{repo}/issues/{issue_number}", "patch"),
    ("/repos/{owner}/{repo}/issues/{issue_number}/comments", "get"),
    ("/repos/{owner}/{repo}/issues/{issue_number}/comments", "post"),
    ("/repos/{owner}/{repo}/labels/{name}", "get"),
    ("/repos/{owner}/{repo}/labels", "post"),
    ("/repos/{owner}/{repo}/deployments", "get"),
    ("/repos/{owner}/{repo}/deployments", "post"),
    ("/repos/{owner}/{repo}/deployments/{deployment_id}", "get"),
    ("/repos/{owner}/{repo}/deployments/{deployment_id}/statuses", "get"),
    ("/repos/{owner}/{repo}/deployments/{deployment_id}/statuses", "post"),
]

PROSE = {"description", "summary", "example", "examples", "externalDocs", "x-github",
         "x-githubEnterpriseOverlays", "x-github-releases", "title", "tags"}


def strip(node, names=False):
    """Drops prose keys; `names` marks a map of property names (kept as they are)."""
    if isinstance(node, dict):
        if names:
            return {k: strip(v) for k, v in node.items()}
        return {k: strip(v, k == "properties") for k, v in node.items() if k not in PROSE}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def refs(node, found):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                found.add(v)
            else:
                refs(v, found)
    elif isinstance(node, list):
        for v in node:
            refs(v, found)


def resolve(doc, ref):
    assert ref.startswith("#/"), ref
    node = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def load(args):
    if args.tarball:
        tarball = args.tarball
        tmp = None
    else:
        tmp = tempfile.mkdtemp()
        subprocess.run(["npm", "pack", f"{PACKAGE}@{args.version}", "--pack-destination", tmp],
                       check=True, stdout=subprocess.DEVNULL)
        tarball = os.path.join(tmp, [f for f in os.listdir(tmp) if f.endswith(".tgz")][0])
    with tarfile.open(tarball) as archive:
        return json.load(archive.extractfile(MEMBER))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--version", default=DEFAULT_VERSION)
    parser.add_argument("--tarball")
    args = parser.parse_args()
    doc = load(args)
    paths = {}
    for path, method in OPERATIONS:
        paths.setdefault(path, {})[method] = strip(doc["paths"][path][method])
    components = {}
    pending = set()
    refs(paths, pending)
    seen = set()
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        _, _, kind, name = ref.split("/", 3)
        node = strip(resolve(doc, ref))
        components.setdefault(kind, {})[name] = node
        refs(node, pending)
    out = {
        "openapi": doc["openapi"],
        "info": {"title": "GitHub REST API (subset used by shiftgate)",
                 "version": doc["info"]["version"],
                 "source": f"npm {PACKAGE}@{args.version} generated/api.github.com.json"},
        "paths": paths,
        "components": components,
    }
    with open(OUTPUT, "w") as f:
        json.dump(out, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"wrote {os.path.normpath(OUTPUT)}: {len(OPERATIONS)} operations, "
          f"{sum(len(v) for v in components.values())} components", file=sys.stderr)


if __name__ == "__main__":
    main()
