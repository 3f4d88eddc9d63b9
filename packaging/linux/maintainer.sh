# The maintainer scripts of the Debian and RPM packages of palisade-agent,
# written once. packaging/build copies this file into each script the
# packages run (deb: preinst, postinst, prerm, postrm; rpm: %pre, %post,
# %preun, %postun) followed by one call, e.g. `palisade_deb_postinst "$@"`;
# so both packages configure the agent the same way.
#
# POSIX sh (dash, busybox sh); never `source`s anything. The silent-install
# settings (packaging/README.md, the same names as the MSI's and the macOS
# pkg's properties) come from the environment (PALISADE_COLLECTOR_URL,
# PALISADE_ENROLL_SECRET, PALISADE_CA_PIN) or from the preseed file
# /etc/palisade/install.conf (KEY=VALUE lines, keys without the prefix);
# the environment wins. The enrollment secret is only ever written to
# /var/lib/palisade/enroll-secret (0600, in a 0700 directory), which the
# agent deletes once it has enrolled (agent/src/daemon/installer.rs); it is
# never printed, and it is passed to no command line: printf is a builtin.

PALISADE_CONFIG=/etc/palisade/agent.toml
PALISADE_PRESEED=/etc/palisade/install.conf
PALISADE_STATE=/var/lib/palisade
# shellcheck disable=SC2034 # read by maintainer-deb.sh and maintainer-rpm.sh
PALISADE_UNIT=palisade-agent.service

palisade_die() {
  printf 'palisade-agent: %s\n' "$*" >&2
  exit 1
}

# The argument without leading and trailing blanks (spaces and tabs).
palisade_trim() {
  set -- "$1"
  set -- "${1#"${1%%[! 	]*}"}"
  printf '%s' "${1%"${1##*[! 	]}"}"
}

# Reads the preseed file, if there is one, into palisade_file_* variables.
# A line that is not blank, not a `#` comment and not KEY=VALUE with a known
# KEY is an error naming the file and line (never the line itself, nor a
# key that is not all capitals: either may be the secret).
palisade_read_preseed() {
  palisade_file_url='' palisade_file_secret='' palisade_file_pin=''
  palisade_file_has_secret=''
  [ -e "$PALISADE_PRESEED" ] || return 0
  [ -f "$PALISADE_PRESEED" ] || palisade_die "$PALISADE_PRESEED is not a file"
  palisade_line=0
  while IFS= read -r palisade_text || [ -n "$palisade_text" ]; do
    palisade_line=$((palisade_line + 1))
    palisade_text=$(palisade_trim "$palisade_text")
    case $palisade_text in '' | '#'*) continue ;; esac
    palisade_where="$PALISADE_PRESEED:$palisade_line"
    case $palisade_text in
      *=*) ;;
      *) palisade_die "$palisade_where: expected KEY=VALUE (COLLECTOR_URL, ENROLL_SECRET or CA_PIN)" ;;
    esac
    palisade_key=$(palisade_trim "${palisade_text%%=*}")
    palisade_value=$(palisade_trim "${palisade_text#*=}")
    # One pair of surrounding quotes is allowed, as in an env file.
    case $palisade_value in
      \"*\" | \'*\') palisade_value=${palisade_value#?} palisade_value=${palisade_value%?} ;;
    esac
    case $palisade_key in
      COLLECTOR_URL) palisade_file_url=$palisade_value ;;
      ENROLL_SECRET) palisade_file_secret=$palisade_value palisade_file_has_secret=yes ;;
      CA_PIN) palisade_file_pin=$palisade_value ;;
      *[!A-Z_]* | '') palisade_die "$palisade_where: unknown key (known: COLLECTOR_URL, ENROLL_SECRET, CA_PIN)" ;;
      *) palisade_die "$palisade_where: unknown key '$palisade_key' (known: COLLECTOR_URL, ENROLL_SECRET, CA_PIN)" ;;
    esac
  done <"$PALISADE_PRESEED"
}

# Refuses a value that cannot go between TOML quotes as it is (a quote, a
# backslash, a control character such as a newline).
palisade_check_plain() {
  case $2 in
    *[\"\\]* | *[[:cntrl:]]*)
      palisade_die "$1 must not contain a quote, a backslash or a control character" ;;
  esac
}

# Sets palisade_url, palisade_secret and palisade_pin (empty: not given)
# from the environment and the preseed file, and checks them.
palisade_settings() {
  palisade_read_preseed
  palisade_url=${PALISADE_COLLECTOR_URL:-$palisade_file_url}
  palisade_secret=${PALISADE_ENROLL_SECRET:-$palisade_file_secret}
  palisade_pin=${PALISADE_CA_PIN:-$palisade_file_pin}
  palisade_check_plain COLLECTOR_URL "$palisade_url"
  palisade_check_plain CA_PIN "$palisade_pin"
  palisade_check_plain ENROLL_SECRET "$palisade_secret"
  case $palisade_url in
    '' | https://?* | http://?*) ;;
    *) palisade_die "COLLECTOR_URL must start with https:// (or http:// for a loopback collector)" ;;
  esac
  case $palisade_pin in
    '') ;;
    sha256/*[!A-Za-z0-9+/=]* | sha256/) palisade_die "CA_PIN must be sha256/ and the base64 SHA-256 of a public key" ;;
    sha256/*) ;;
    *) palisade_die "CA_PIN must be sha256/ and the base64 SHA-256 of a public key" ;;
  esac
  case $palisade_secret in
    *[[:space:]]*) palisade_die "ENROLL_SECRET must not contain blanks" ;;
  esac
  # The agent refuses a config with both (config/agent.toml).
  if [ -n "$palisade_pin" ] && palisade_config_has ca_file; then
    palisade_die "CA_PIN given, but $PALISADE_CONFIG sets ca_file: remove ca_file, or give no CA_PIN"
  fi
}

# Whether the config file exists and sets the top-level key $1.
palisade_config_has() {
  [ -f "$PALISADE_CONFIG" ] || return 1
  while IFS= read -r palisade_text || [ -n "$palisade_text" ]; do
    palisade_text=${palisade_text#"${palisade_text%%[! 	]*}"}
    case $palisade_text in
      '['*) return 1 ;;
      "$1"=* | "$1"[' 	']*=*) return 0 ;;
    esac
  done <"$PALISADE_CONFIG"
  return 1
}

# Sets `KEY = "VALUE"` in the config file: the key's top-level line is
# replaced (a second one dropped, so the TOML stays valid), or the line is
# added before the first [table], or at the end. Every other line is kept;
# the file keeps its owner and mode. Plain sh, no awk: maintainer scripts
# may rely only on Essential packages.
palisade_set_key() {
  palisade_new="$1 = \"$2\"" palisade_done='' palisade_table=''
  cp -p "$PALISADE_CONFIG" "$PALISADE_CONFIG.palisade-new"
  while IFS= read -r palisade_text || [ -n "$palisade_text" ]; do
    palisade_left=${palisade_text#"${palisade_text%%[! 	]*}"}
    case $palisade_left in
      '['*)
        [ -n "$palisade_done" ] || printf '%s\n' "$palisade_new"
        palisade_done=yes palisade_table=yes
        ;;
      "$1"=* | "$1"[' 	']*=*)
        if [ -z "$palisade_table" ]; then
          [ -n "$palisade_done" ] || printf '%s\n' "$palisade_new"
          palisade_done=yes
          continue
        fi
        ;;
    esac
    printf '%s\n' "$palisade_text"
  done <"$PALISADE_CONFIG" >"$PALISADE_CONFIG.palisade-new"
  [ -n "$palisade_done" ] || printf '%s\n' "$palisade_new" >>"$PALISADE_CONFIG.palisade-new"
  mv -f "$PALISADE_CONFIG.palisade-new" "$PALISADE_CONFIG"
}

# Creates the config file when it is absent (it is no conffile: dpkg would
# ask on upgrade about a file this script edits), then sets what was given.
palisade_write_config() {
  if [ ! -e "$PALISADE_CONFIG" ]; then
    mkdir -p "${PALISADE_CONFIG%/*}"
    {
      printf '%s\n' "# Palisade agent configuration, created by the package's install script."
      printf '%s\n' "# Every key, with its default and why: /usr/share/doc/palisade-agent/examples/agent.toml"
      printf '%s\n' "# The agent re-reads this file when it changes."
    } >"$PALISADE_CONFIG.palisade-new"
    chmod 0644 "$PALISADE_CONFIG.palisade-new"
    mv -f "$PALISADE_CONFIG.palisade-new" "$PALISADE_CONFIG"
  fi
  [ -z "$palisade_url" ] || palisade_set_key collector_url "$palisade_url"
  [ -z "$palisade_pin" ] || palisade_set_key ca_pin "$palisade_pin"
}

# Writes the secret for the agent's first enrollment. Under umask 077 the
# directory and the file are never readable by anyone but root, not even
# between a create and a chmod.
palisade_write_secret() {
  [ -n "$palisade_secret" ] || return 0
  (
    umask 077
    [ -d "$PALISADE_STATE" ] || mkdir -p "$PALISADE_STATE"
    printf '%s\n' "$palisade_secret" >"$PALISADE_STATE/enroll-secret.palisade-new"
    mv -f "$PALISADE_STATE/enroll-secret.palisade-new" "$PALISADE_STATE/enroll-secret"
  )
}

# The whole silent configuration, after the files are in place.
palisade_configure() {
  palisade_settings
  palisade_write_config
  palisade_write_secret
  # The secret must not stay on disk anywhere but in the agent's state.
  [ -z "$palisade_file_has_secret" ] || rm -f "$PALISADE_PRESEED"
}

# Forgets what the agent and this script left: config, preseed, device
# identity, spool.
palisade_purge() {
  rm -f "$PALISADE_CONFIG" "$PALISADE_CONFIG.palisade-new" "$PALISADE_PRESEED"
  rmdir "${PALISADE_CONFIG%/*}" 2>/dev/null || true
  rm -rf "$PALISADE_STATE"
}

palisade_systemd_running() {
  [ -d /run/systemd/system ]
}
