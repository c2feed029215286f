# shellcheck shell=bash
# The body of a PloyD machine's user data: app.adapters.ec2.userdata puts the shebang and
# this machine's values (PLOYD_SERVER_URL, PLOYD_AGENT_ID, PLOYD_REGISTRATION_TOKEN,
# PLOYD_AGENT_URL, PLOYD_AGENT_SHA256, PLOYD_WORK_DIR, PLOYD_AGENT_PATH, PLOYD_EXPECT_GPUS,
# PLOYD_RETIRE_CODES, PLOYD_START_LIMIT_BURST, PLOYD_START_LIMIT_INTERVAL) above it. Run once, as root, by
# cloud-init at first boot. No package index is contacted: the agent is one file from the
# PloyD server (or baked into the image), run by the system's own python3.
#
# Tests run it in a throwaway root: every path it writes is under ${PLOYD_ROOT:-} and
# every command (systemctl, shutdown, curl, python3, git...) is found on PATH.
# Never trace this script (bash's xtrace): the token would end up in the cloud-init log.
set -Eeuo pipefail
umask 077

ROOT="${PLOYD_ROOT:-}"
IMDS_URL="${PLOYD_IMDS_URL:-http://169.254.169.254}"
AGENT="$ROOT$PLOYD_AGENT_PATH"
WORK_DIR="$ROOT$PLOYD_WORK_DIR"
ENV_FILE="$ROOT/etc/ployd/agent.env"
RUNNER="$ROOT/usr/local/lib/ployd/run-agent"
UNIT=ployd-agent.service
UNIT_FILE="$ROOT/etc/systemd/system/$UNIT"
PYTHON=""

log() { echo "ployd-bootstrap: $*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }

json_string() {  # $1 as a JSON string (control characters dropped)
  printf '"%s"' "$(printf '%s' "$1" | tr -d '\000-\037' | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')"
}

report() {  # tell the server why this machine could not start its agent (best effort)
  local url="$PLOYD_SERVER_URL/api/v1/agent/bootstrap-failed" body
  body="{\"reason\": $(json_string "$1")}"
  if have curl; then
    # the token goes in curl's config on stdin, never on a command line `ps` shows
    printf 'header = "Authorization: Bearer %s"\n' "$PLOYD_REGISTRATION_TOKEN" |
      curl -fsS --max-time 20 --retry 3 --retry-connrefused --config - \
        -H 'Content-Type: application/json' --data-binary "$body" -o /dev/null "$url"
  elif [ -n "$PYTHON" ]; then
    PLOYD_T="$PLOYD_REGISTRATION_TOKEN" "$PYTHON" -I -c '
import os, sys, urllib.request
req = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), method="POST",
    headers={"Authorization": "Bearer " + os.environ["PLOYD_T"],
             "Content-Type": "application/json"})
urllib.request.urlopen(req, timeout=20).close()
' "$url" "$body"
  else
    return 1
  fi
}

retire() {  # say why, tell the server, and shut down (the instance then terminates)
  trap - ERR
  set +e
  log "$1; shutting down"
  report "$1" || log "could not report the failure to $PLOYD_SERVER_URL"
  shutdown -h now
  exit 1
}
trap 'retire "the bootstrap failed at line $LINENO ($BASH_COMMAND)"' ERR

sha256_of() {
  if have sha256sum; then
    sha256sum "$1" | cut -d' ' -f1
  else
    "$PYTHON" -I -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$1"
  fi
}

fetch() {  # URL FILE
  if have curl; then
    curl -fsSL --retry 5 --retry-delay 2 --retry-connrefused --max-time 300 -o "$2" "$1"
  else
    local i
    for i in 1 2 3 4 5; do
      "$PYTHON" -I -c '
import shutil, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=300) as r, open(sys.argv[2], "wb") as f:
    shutil.copyfileobj(r, f)
' "$1" "$2" && return 0
      sleep "$i"
    done
    return 1
  fi
}

# -- the system's python3, 3.9 or newer ---------------------------------------------------
have python3 || retire "no python3 on this machine: the PloyD agent needs Python 3.9 or newer in the image"
PYTHON="$(command -v python3)"
PYTHON_VERSION="$("$PYTHON" -I -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>&1)" ||
  retire "$PYTHON does not run: $PYTHON_VERSION"
"$PYTHON" -I -c 'import sys; sys.exit(sys.version_info < (3, 9))' ||
  retire "$PYTHON is Python $PYTHON_VERSION: the PloyD agent needs 3.9 or newer"

# -- git, which the agent fetches code with (from the distribution's own repositories) ---
if ! have git; then
  log "installing git from the distribution's repositories"
  if have apt-get; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      DEBIAN_FRONTEND=noninteractive apt-get install -yq --no-install-recommends git ||
      retire "could not install git with apt-get"
  elif have dnf; then
    dnf install -yq git || retire "could not install git with dnf"
  else
    retire "no git on this machine, and no apt-get or dnf to install it"
  fi
fi

# -- the agent: baked into the image when its SHA-256 matches, else downloaded -------------
umask 022
mkdir -p "$(dirname "$AGENT")"
if [ -f "$AGENT" ] && [ "$(sha256_of "$AGENT")" = "$PLOYD_AGENT_SHA256" ]; then
  log "using the agent baked into the image at $AGENT"
else
  if [ -f "$AGENT" ]; then
    log "the agent at $AGENT is not this server's ($PLOYD_AGENT_SHA256): downloading it"
  fi
  part="$AGENT.part"
  rm -f "$part"
  fetch "$PLOYD_AGENT_URL" "$part" || retire "could not download the agent from $PLOYD_AGENT_URL"
  got="$(sha256_of "$part")"
  if [ "$got" != "$PLOYD_AGENT_SHA256" ]; then
    rm -f "$part"
    retire "the agent downloaded from $PLOYD_AGENT_URL has SHA-256 $got, not $PLOYD_AGENT_SHA256: refused"
  fi
  chmod 0644 "$part"
  mv -f "$part" "$AGENT"
  log "downloaded the agent from $PLOYD_AGENT_URL (SHA-256 verified)"
fi

# -- how steps are confined: the agent runs as root and its steps as ployd-job (which it
# creates), in a bubblewrap sandbox when bwrap is installed (bake it into the AMI).
if ! have bwrap; then
  log "bubblewrap (bwrap) is not installed: steps will run as ployd-job without a sandbox"
fi

# -- the token, for systemd's EnvironmentFile (root only, never on a command line) -------
umask 077
mkdir -p "$ROOT/etc/ployd"
chmod 0700 "$ROOT/etc/ployd"
printf 'PLOYD_AGENT_TOKEN=%s\n' "$PLOYD_REGISTRATION_TOKEN" > "$ENV_FILE"
chmod 0600 "$ENV_FILE"

# -- the runner: the agent, then the machine retires when the agent says so --------------
umask 022
mkdir -p "$WORK_DIR" "$(dirname "$RUNNER")" "$(dirname "$UNIT_FILE")"
expect=()  # bash 4.2 (Amazon Linux 2) under set -u: expanded as ${a[@]+...}
if [ -n "${PLOYD_EXPECT_GPUS:-}" ]; then  # the GPUs this instance type has: checked first
  expect=(--expect-gpus "$PLOYD_EXPECT_GPUS")
fi
agent_cmd="$(printf '%q ' "$PYTHON" -I "$AGENT" --server "$PLOYD_SERVER_URL" \
  --agent-id "$PLOYD_AGENT_ID" --work-dir "$WORK_DIR" --imds-url "$IMDS_URL" ${expect[@]+"${expect[@]}"})"
cat > "$RUNNER" <<PLOYD_RUNNER
#!/bin/bash
# Started by $UNIT: the agent (Python $PYTHON_VERSION), then the machine retires when
# the agent exits with one of: $PLOYD_RETIRE_CODES.
$agent_cmd
code=\$?
for retire in $PLOYD_RETIRE_CODES; do
  if [ "\$code" -eq "\$retire" ]; then
    echo "ployd: agent exited \$code: retiring this machine" >&2
    shutdown -h now
  fi
done
exit "\$code"
PLOYD_RUNNER
chmod 0755 "$RUNNER"

cat > "$UNIT_FILE" <<PLOYD_UNIT
[Unit]
Description=PloyD agent
Wants=network-online.target
After=network-online.target
StartLimitIntervalSec=$PLOYD_START_LIMIT_INTERVAL
StartLimitBurst=$PLOYD_START_LIMIT_BURST
StartLimitAction=poweroff

[Service]
Type=simple
EnvironmentFile=$ENV_FILE
ExecStart=$RUNNER
Restart=on-failure
RestartSec=10
TimeoutStopSec=30

[Install]
WantedBy=multi-user.target
PLOYD_UNIT

systemctl daemon-reload
systemctl enable "$UNIT"
systemctl start --no-block "$UNIT"
log "agent $PLOYD_AGENT_ID started (Python $PYTHON_VERSION at $PYTHON)"
