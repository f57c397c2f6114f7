#!/usr/bin/env bash
# Installs what the test suite needs, idempotently: each step is skipped when its result is
# already present, so a warm machine spends seconds here. Debian packages need root (CI runs as
# root); everything else lands under the project or ~/.cargo.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[deps] %s\n' "$*"; }

apt_updated=0
need_apt() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    log "debian packages present: $*"
    return
  fi
  if [ "$(id -u)" -ne 0 ]; then
    log "missing debian packages ${missing[*]} and not root: install them with apt-get" >&2
    exit 1
  fi
  if [ $apt_updated -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Components are added here as the features that need them land (see DESIGN.md, "Real components").
need_apt ca-certificates

# The shadow client against a server nobody here wrote (tests/nginx_candidate.rs); also the
# load benchmark's anchors (benches/load.sh).
need_apt nginx
# Test certificates for the TLS tests (tests/tls.rs: a CA, server, expired and client certificates).
need_apt openssl

# Capture (src/capture, tests/capture*.rs): the binary links libpcap; the live capture test
# listens on `lo` as root and records sample captures with tcpdump.
need_apt libpcap-dev tcpdump

# Kafka sink tests (tests/kafka.rs): a Kafka-compatible broker and an independent client.
# tansu builds from source once (20-30 minutes) and is cached under ~/.cargo/bin.
if command -v tansu >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/tansu" ]; then
  log "tansu present"
else
  log "installing tansu 0.6.0 (cargo install; slow, once)"
  cargo install tansu --version 0.6.0 --locked --features dynostore
fi
# The tests' Python packages live in one virtual environment, target/pyenv.
if [ -x target/pyenv/bin/python ]; then
  log "python venv present (target/pyenv)"
else
  log "creating target/pyenv"
  # Debian's python3 keeps venv in a separate package.
  python3 -c 'import ensurepip' >/dev/null 2>&1 || need_apt python3-venv
  mkdir -p target
  python3 -m venv target/pyenv
fi
# confluent-kafka bundles a current librdkafka (Debian's kcat is too old to talk to tansu).
if target/pyenv/bin/python -c 'import confluent_kafka' >/dev/null 2>&1; then
  log "confluent-kafka present (target/pyenv)"
else
  log "installing confluent-kafka into target/pyenv"
  target/pyenv/bin/pip install -q confluent-kafka
fi

# Offline validation of deploy/ (scripts/validate-deploy.py): kubernetes-validate carries the
# Kubernetes schemas (no cluster needed); kustomize is built into kubectl, which this machine
# kind ships (Debian's own kubernetes-client is 1.20, too old for the overlays).
kv_version=1.37.0
if [ "$(target/pyenv/bin/kubernetes-validate --version 2>/dev/null)" = "$kv_version" ]; then
  log "kubernetes-validate $kv_version present (target/pyenv)"
else
  log "installing kubernetes-validate $kv_version into target/pyenv"
  target/pyenv/bin/pip install -q "kubernetes-validate==$kv_version"
fi
if ! kubectl kustomize --help >/dev/null 2>&1; then
  log "installing kubectl (kustomize is built in)"
  apt-get install -y -q kubectl >/dev/null 2>&1 || true
fi
if ! kubectl kustomize --help >/dev/null 2>&1; then
  log "WARNING: no kubectl: deploy/ overlays will not be rendered, only the base files validated" >&2
fi

# Descriptor limits on the child process (tests/hostile_inbound.rs): prlimit, from util-linux
# (essential on Debian, so normally present already).
need_apt util-linux

# Review UI browser test (tests/ui.rs): Debian's Chromium, driven by playwright-core from npm.
# playwright-core never downloads a browser of its own; the test points it at /usr/bin/chromium.
# The npm packages land in target/ui-test/ (git-ignored), pinned by tests/ui/package-lock.json.
need_apt chromium
ui_dir=target/ui-test
if [ -f "$ui_dir/node_modules/playwright-core/package.json" ] &&
  cmp -s tests/ui/package-lock.json "$ui_dir/package-lock.json"; then
  log "playwright-core present ($ui_dir/node_modules)"
else
  command -v npm >/dev/null 2>&1 || need_apt nodejs npm
  log "installing playwright-core into $ui_dir (npm ci)"
  mkdir -p "$ui_dir"
  cp tests/ui/package.json tests/ui/package-lock.json "$ui_dir/"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix "$ui_dir" --no-audit --no-fund --loglevel=error
fi
