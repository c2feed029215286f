# shellcheck shell=sh
# The body of install.sh (GET /agent/install.sh): app.agentinstall puts the shebang and
# this server's values (PLOYD_SERVER_URL, PLOYD_AGENT_VERSION, PLOYD_AGENT_SHA256,
# PLOYD_AGENT_PATH) above it. POSIX sh: it is piped to `sh`:
#
#   curl -fsSL https://PLOYD/agent/install.sh | sudo sh -s -- --token TOKEN \
#       [--name NAME] [--labels k=v,...] [--server URL]
#
# Installs this machine as a self-hosted PloyD agent: downloads the agent file from the
# server and checks its SHA-256, creates the unprivileged system user `ployd`, writes the
# token to a root-only environment file, installs the systemd unit ployd-agent.service
# (python3 /opt/ployd/ployd-agent.pyz --server URL, as ployd) and starts it. Run it again
# to change the token, name or labels, or to reinstall the agent.
#
# Tests run it in a throwaway root: every path it writes is under ${PLOYD_ROOT:-} and
# every command (useradd, chown, systemctl, curl, python3...) is found on PATH.
set -eu
umask 022

ROOT="${PLOYD_ROOT:-}"
USER_NAME=ployd
AGENT_PATH="$PLOYD_AGENT_PATH"
HOME_DIR=/var/lib/ployd
ENV_FILE=/etc/ployd/agent.env
UNIT=ployd-agent.service
UNIT_FILE="/etc/systemd/system/$UNIT"

say() { echo "ployd-install: $*" >&2; }
die() { say "error: $*"; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

usage() {
  cat >&2 <<'USAGE'
usage: curl -fsSL https://PLOYD/agent/install.sh | sudo sh -s -- --token TOKEN
         [--name NAME] [--labels k=v,...] [--server URL]
  --token TOKEN    the agent token (ployd agents token create --pool NAME)
  --name NAME      this agent's name (default: the host name)
  --labels k=v,..  labels jobs can ask for
  --server URL     where the agent reaches PloyD (default: where this script came from)
USAGE
}

token=""
name=""
labels=""
server="$PLOYD_SERVER_URL"
while [ $# -gt 0 ]; do
  case "$1" in
    --token) [ $# -ge 2 ] || die "--token needs a value"; token="$2"; shift 2 ;;
    --token=*) token="${1#*=}"; shift ;;
    --name) [ $# -ge 2 ] || die "--name needs a value"; name="$2"; shift 2 ;;
    --name=*) name="${1#*=}"; shift ;;
    --labels) [ $# -ge 2 ] || die "--labels needs a value"; labels="$2"; shift 2 ;;
    --labels=*) labels="${1#*=}"; shift ;;
    --server) [ $# -ge 2 ] || die "--server needs a value"; server="$2"; shift 2 ;;
    --server=*) server="${1#*=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage; die "unknown option: $1" ;;
  esac
done

[ -n "$token" ] || { usage; die "--token is required"; }
case "$token" in
  *[!A-Za-z0-9._~+/=-]*) die "the token has characters no PloyD token has" ;;
esac
[ -n "$name" ] || name="$(hostname 2>/dev/null || uname -n)"
name="$(printf '%s' "$name" | tr -c 'A-Za-z0-9._-' '-' | cut -c1-128)"
case "$name" in
  [A-Za-z0-9]*) ;;
  *) die "--name must start with a letter or digit" ;;
esac
case "$labels" in
  *[!A-Za-z0-9._,=:/-]*) die "--labels: k=v pairs separated by commas (letters, digits, . _ - : /)" ;;
esac
case "$server" in
  http://*|https://*) ;;
  *) die "--server must be an http(s) URL" ;;
esac
case "$server" in
  *[!A-Za-z0-9._~:/-]*) die "--server: a URL of letters, digits and . _ ~ : / - only" ;;
esac
server="${server%/}"
if [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then
  die "run it as root: curl -fsSL $server/agent/install.sh | sudo sh -s -- --token ..."
fi

# -- python3, 3.9 or newer ----------------------------------------------------------------
have python3 || die "no python3 on this machine: the PloyD agent needs Python 3.9 or newer"
PYTHON="$(command -v python3)"
"$PYTHON" -I -c 'import sys; sys.exit(sys.version_info < (3, 9))' ||
  die "$PYTHON is Python $("$PYTHON" -V 2>&1): the PloyD agent needs 3.9 or newer"
have git || say "warning: no git on this machine; the agent needs it to fetch code"
have systemctl || die "no systemctl: this installer sets the agent up as a systemd service"

# -- the agent file, checked against the server's SHA-256 ------------------------------------
sha256_of() {
  if have sha256sum; then
    sha256sum "$1" | cut -d' ' -f1
  else
    "$PYTHON" -I -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$1"
  fi
}
fetch() {  # URL FILE
  if have curl; then
    curl -fsSL --retry 3 --retry-delay 2 --max-time 300 -o "$2" "$1"
  else
    "$PYTHON" -I -c '
import shutil, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=300) as r, open(sys.argv[2], "wb") as f:
    shutil.copyfileobj(r, f)
' "$1" "$2"
  fi
}
mkdir -p "$ROOT$(dirname "$AGENT_PATH")"
part="$ROOT$AGENT_PATH.part"
rm -f "$part"
url="$server/agent/ployd-agent.pyz"
fetch "$url" "$part" || { rm -f "$part"; die "could not download the agent from $url"; }
got="$(sha256_of "$part")"
if [ "$got" != "$PLOYD_AGENT_SHA256" ]; then
  rm -f "$part"
  die "the agent downloaded from $url has SHA-256 $got, not $PLOYD_AGENT_SHA256: refused"
fi
chmod 0644 "$part"
mv -f "$part" "$ROOT$AGENT_PATH"
say "agent $PLOYD_AGENT_VERSION installed at $AGENT_PATH (SHA-256 verified)"

# -- steps are confined in a bubblewrap sandbox when bwrap is installed -----------------------
if ! have bwrap; then
  say "warning: bubblewrap (bwrap) is not installed: steps will run unconfined as $USER_NAME"
  say "  (apt-get install bubblewrap, or dnf install bubblewrap, then restart the agent)"
fi

# -- the unprivileged user the agent runs as ---------------------------------------------------
nologin=/usr/sbin/nologin
[ -x "$nologin" ] || nologin=/sbin/nologin
[ -x "$nologin" ] || nologin=/bin/false
if id "$USER_NAME" >/dev/null 2>&1; then
  say "user $USER_NAME exists"
elif have useradd; then
  useradd --system --user-group --home-dir "$HOME_DIR" --shell "$nologin" \
    --comment "PloyD agent" "$USER_NAME"
elif have adduser; then
  adduser --system --group --home "$HOME_DIR" --shell "$nologin" --no-create-home "$USER_NAME" 2>/dev/null ||
    adduser -S -D -H -h "$HOME_DIR" -s "$nologin" "$USER_NAME"
else
  die "no useradd or adduser to create the user $USER_NAME"
fi
mkdir -p "$ROOT$HOME_DIR/work" "$ROOT$HOME_DIR/state"
chmod 0750 "$ROOT$HOME_DIR"
chmod 0700 "$ROOT$HOME_DIR/state"
chown -R "$USER_NAME:" "$ROOT$HOME_DIR"

# -- the token, readable by root only (systemd reads it before dropping to $USER_NAME) --------
mkdir -p "$ROOT$(dirname "$ENV_FILE")"
chmod 0700 "$ROOT$(dirname "$ENV_FILE")"
old_umask="$(umask)"
umask 077
{
  printf 'PLOYD_AGENT_TOKEN=%s\n' "$token"
  printf 'PLOYD_AGENT_LABELS=%s\n' "$labels"
} > "$ROOT$ENV_FILE.new"
chmod 0600 "$ROOT$ENV_FILE.new"
mv -f "$ROOT$ENV_FILE.new" "$ROOT$ENV_FILE"
umask "$old_umask"

# -- the service -------------------------------------------------------------------------------
mkdir -p "$ROOT$(dirname "$UNIT_FILE")"
cat > "$ROOT$UNIT_FILE" <<UNIT
[Unit]
Description=PloyD agent $name
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
User=$USER_NAME
Group=$USER_NAME
EnvironmentFile=$ROOT$ENV_FILE
WorkingDirectory=$ROOT$HOME_DIR
ExecStart=$PYTHON -I $ROOT$AGENT_PATH --server $server --agent-id $name --work-dir $ROOT$HOME_DIR/work --state-dir $ROOT$HOME_DIR/state
Restart=always
RestartSec=5
# The state directory keeps the agent's credential across restarts and reboots (hidden
# from steps by the sandbox); without bubblewrap it stays in memory.
# Exit 2: the server refused the credential and the registration token (used once
# already, expired): restarting cannot help; a new token and a re-install can.
RestartPreventExitStatus=2
# SIGTERM lets the running job finish (the agent's --grace-s, 600 s by default).
TimeoutStopSec=630
NoNewPrivileges=yes
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
UNIT
chmod 0644 "$ROOT$UNIT_FILE"

systemctl daemon-reload
systemctl enable "$UNIT"
systemctl restart "$UNIT"
say "agent $name started: systemctl status $UNIT; journalctl -u $UNIT"
