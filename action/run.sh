#!/usr/bin/env bash
# The action's step: fetch the prebuilt shiftgate for this runner from the release this ref was cut
# for, verify its SHA-256 against action/checksums.txt, and exec it, so that the runner's SIGINT and
# SIGTERM on cancellation reach shiftgate itself. With no release for the ref (a branch), it builds
# from source with cargo and says so.
#
# Arguments are passed to shiftgate after the command ($SHIFTGATE_ACTION_COMMAND, default rollout).
# Environment (action.yml sets these from its inputs and the github context):
#   SHIFTGATE_ACTION_REF         the action's ref (github.action_ref): v1, v1.2.0, a SHA, a branch;
#                                when empty, $GITHUB_ACTION_REF, then v<version of ../Cargo.toml>
#   SHIFTGATE_ACTION_REPOSITORY  owner/name of the action (github.action_repository)
#                                [default: $GITHUB_ACTION_REPOSITORY, then shiftgate/shiftgate]
#   SHIFTGATE_RELEASE_BASE_URL   where releases are downloaded from
#                                [default: $GITHUB_SERVER_URL/OWNER/NAME/releases/download]
#   SHIFTGATE_CHECKSUMS_FILE     [default: action/checksums.txt next to this script]
#   SHIFTGATE_ACTION_INPUTS      dispatch inputs, one KEY=VALUE per line (each becomes --input)
#   SHIFTGATE_ACTION_HEALTH_EXPECT  health rules, one KEY=VALUE per line (each --health-expect)
#   SHIFTGATE_ACTION_LABELS      incident labels, one per line (each --label)
#   SHIFTGATE_ACTION_NOTIFY      webhook URLs, one per line (SHIFTGATE_NOTIFY, comma-joined)
#   SHIFTGATE_ACTION_ARGS        extra arguments, split on whitespace
#   RUNNER_OS, RUNNER_ARCH, RUNNER_TOOL_CACHE, RUNNER_TEMP  set by the runner
set -euo pipefail

say() { printf 'shiftgate action: %s\n' "$*" >&2; }
fail() {
  printf '::error title=shiftgate action::%s\n' "$*" >&2
  exit 2
}

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
checksums="${SHIFTGATE_CHECKSUMS_FILE:-$root/action/checksums.txt}"
repository="${SHIFTGATE_ACTION_REPOSITORY:-${GITHUB_ACTION_REPOSITORY:-shiftgate/shiftgate}}"

# The package version of the checked-out action (its Cargo.toml), as a release tag: vX.Y.Z.
cargo_version_tag() {
  local version
  version="$(sed -n 's/^version = "\([^"]*\)"$/\1/p' "$root/Cargo.toml" 2>/dev/null | head -n 1)"
  if [[ -n "$version" ]]; then printf 'v%s\n' "$version"; fi
}

# github.action_ref can arrive empty in a composite action (actions/runner#2473). Then the
# checked-out action says which release it is: checksums.txt has entries only on a release commit,
# whose Cargo.toml version is its tag, so on any other commit this still finds no release.
ref="${SHIFTGATE_ACTION_REF:-${GITHUB_ACTION_REF:-}}"
if [[ -z "$ref" ]]; then
  ref="$(cargo_version_tag)"
  say "github.action_ref is empty (actions/runner#2473): looking for the release of the action's Cargo.toml version, ${ref:-none}"
fi
base_url="${SHIFTGATE_RELEASE_BASE_URL:-${GITHUB_SERVER_URL:-https://github.com}/$repository/releases/download}"

case "${RUNNER_OS:-$(uname -s)}/${RUNNER_ARCH:-$(uname -m)}" in
  Linux/X64 | Linux/x86_64) target=x86_64-unknown-linux-musl ;;
  Linux/ARM64 | Linux/aarch64) target=aarch64-unknown-linux-musl ;;
  macOS/ARM64 | Darwin/arm64) target=aarch64-apple-darwin ;;
  *) target="" ;;
esac

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  else
    shasum -a 256 "$1" | cut -d' ' -f1
  fi
}

# The release asset for this ref and target: "TAG ASSET SHA256", or nothing. An entry matches the
# ref when its tag is the ref (v1.2.0), the ref is its major tag (v1), or the ref is a commit SHA
# (a pinned release commit); any other ref (a branch) has no release.
release_for_ref() {
  [[ -n "$target" && -f "$checksums" ]] || return 0
  local sha asset tag
  while read -r sha asset; do
    [[ -z "$sha" || "$sha" == \#* ]] && continue
    [[ "$asset" == shiftgate-*-"$target" ]] || continue
    tag="${asset#shiftgate-}"
    tag="${tag%-"$target"}"
    if [[ "$ref" == "$tag" || "$tag" == "$ref".* || "$ref" =~ ^[0-9a-f]{40}$ ]]; then
      printf '%s %s %s\n' "$tag" "$asset" "$sha"
      return 0
    fi
  done <"$checksums"
}

download_release() {
  local tag="$1" asset="$2" want="$3"
  local dir="${RUNNER_TOOL_CACHE:-${RUNNER_TEMP:-${TMPDIR:-/tmp}}}/shiftgate/$tag/$target"
  local binary="$dir/shiftgate"
  if [[ -x "$binary" && "$(sha256_of "$binary")" == "$want" ]]; then
    say "using cached $asset ($want)"
    printf '%s\n' "$binary"
    return 0
  fi
  mkdir -p "$dir"
  local partial
  partial="$(mktemp "$dir/download.XXXXXX")"
  say "downloading $base_url/$tag/$asset"
  if ! curl --fail --silent --show-error --location --retry 3 --connect-timeout 20 \
    --output "$partial" "$base_url/$tag/$asset"; then
    rm -f "$partial"
    fail "could not download $base_url/$tag/$asset"
  fi
  local got
  got="$(sha256_of "$partial")"
  if [[ "$got" != "$want" ]]; then
    rm -f "$partial"
    fail "checksum mismatch for $asset: downloaded $got, $checksums says $want; refusing to run it"
  fi
  chmod +x "$partial"
  mv -f "$partial" "$binary"
  say "verified $asset (sha256 $got)"
  printf '%s\n' "$binary"
}

build_from_source() {
  command -v cargo >/dev/null 2>&1 ||
    fail "no release for ref '${ref:-?}' on ${RUNNER_OS:-?}/${RUNNER_ARCH:-?} and no cargo to build from source"
  local target_dir="${RUNNER_TEMP:-$root/target}/shiftgate-build"
  printf '::notice title=shiftgate action::no release matches ref %s (%s): building shiftgate from source with cargo, which takes a few minutes\n' \
    "${ref:-?}" "${target:-unsupported runner}" >&2
  cargo build --release --locked --quiet --manifest-path "$root/Cargo.toml" \
    --target-dir "$target_dir" >&2 || fail "cargo build failed"
  printf '%s\n' "$target_dir/release/shiftgate"
}

release="$(release_for_ref)"
if [[ -n "$release" ]]; then
  read -r tag asset sha <<<"$release"
  binary="$(download_release "$tag" "$asset" "$sha")"
else
  binary="$(build_from_source)"
fi

# Empty inputs arrive as empty variables; unset them so shiftgate sees "not given".
while IFS= read -r name; do
  if [[ -z "${!name}" ]]; then unset "$name"; fi
done < <(compgen -e | grep '^SHIFTGATE_' || true)

args=("${SHIFTGATE_ACTION_COMMAND:-rollout}")
add_lines() {
  local flag="$1" text="${2:-}" line
  while IFS= read -r line; do
    line="${line#"${line%%[![:space:]]*}"}"
    line="${line%"${line##*[![:space:]]}"}"
    if [[ -n "$line" ]]; then args+=("$flag" "$line"); fi
  done <<<"$text"
}
add_lines --input "${SHIFTGATE_ACTION_INPUTS:-}"
add_lines --health-expect "${SHIFTGATE_ACTION_HEALTH_EXPECT:-}"
add_lines --label "${SHIFTGATE_ACTION_LABELS:-}"
# Webhook URLs are secrets: they go to shiftgate in its environment, never on its command line
# (which any process on the runner can read).
notify=""
while IFS= read -r line; do
  line="${line#"${line%%[![:space:]]*}"}"
  line="${line%"${line##*[![:space:]]}"}"
  if [[ -n "$line" ]]; then notify="${notify:+$notify,}$line"; fi
done <<<"${SHIFTGATE_ACTION_NOTIFY:-}"
if [[ -n "$notify" ]]; then export SHIFTGATE_NOTIFY="$notify"; fi
if [[ -n "${SHIFTGATE_ACTION_ARGS:-}" ]]; then
  read -r -a extra <<<"$SHIFTGATE_ACTION_ARGS"
  args+=("${extra[@]}")
fi
unset SHIFTGATE_ACTION_COMMAND SHIFTGATE_ACTION_INPUTS SHIFTGATE_ACTION_HEALTH_EXPECT \
  SHIFTGATE_ACTION_NOTIFY SHIFTGATE_ACTION_LABELS SHIFTGATE_ACTION_ARGS SHIFTGATE_ACTION_REF SHIFTGATE_ACTION_REPOSITORY

# exec: shiftgate replaces this shell, so the runner's signals on cancellation reach it directly.
exec "$binary" "${args[@]}" "$@"
