# Sourced by preinstall and postinstall (POSIX sh): where the package's files
# are, and the silent-install settings IT left for this install.
#
# The settings and their names are the same as the MSI's properties and the
# Linux packages': COLLECTOR_URL, ENROLL_SECRET, CA_PIN. macOS Installer runs
# the scripts without the environment of whoever ran `installer`, so they come
# from a preseed file that Jamf, Intune or a person drops before installing:
#
#   /Library/Application Support/Palisade/install.conf
#     # comments and blank lines are skipped
#     COLLECTOR_URL=https://palisade.example.org
#     ENROLL_SECRET=the-secret-from-the-collector
#     CA_PIN=sha256/<base64 of the SHA-256 of the collector's key>
#
# PALISADE_COLLECTOR_URL, PALISADE_ENROLL_SECRET and PALISADE_CA_PIN, when set
# and not empty, win over the file (for a script that runs the scripts by
# hand, or an MDM that does pass an environment).
#
# The file is read line by line and never sourced: it is data, and a `$(...)`
# in it must not run as root. An unknown key is an error naming FILE:LINE, so
# a typo (ENROL_SECRET) fails the install instead of enrolling nothing. No
# message ever contains a value: the secret must not reach the Installer log.

# Every path is under the target volume Installer passes as $3 ("/" for the
# running system, so the prefix is empty). PALISADE_INSTALL_ROOT, when set,
# is used instead: the tests run the scripts in a temporary directory with it.
root=${PALISADE_INSTALL_ROOT:-${3%/}}
support_dir="$root/Library/Application Support/Palisade"
preseed_file="$support_dir/install.conf"
config_file="$support_dir/agent.toml"
# The agent's default state directory on macOS (agent/src/config/mod.rs).
state_dir="$support_dir/state"
# agent/src/daemon/installer.rs SECRET_FILE: read, and deleted once enrolled.
secret_file="$state_dir/enroll-secret"
log_dir="$root/Library/Logs/Palisade"
daemon_label=org.palisade.agent
daemon_plist="$root/Library/LaunchDaemons/$daemon_label.plist"
nudge_label=org.palisade.nudge
nudge_plist="$root/Library/LaunchAgents/$nudge_label.plist"

die() {
  printf 'palisade: %s\n' "$*" >&2
  exit 1
}

# Leading and trailing blanks off $1, printed.
trim() {
  set -- "${1#"${1%%[![:space:]]*}"}"
  printf '%s' "${1%"${1##*[![:space:]]}"}"
}

# Reads the preseed file, if there is one, into collector_url, enroll_secret
# and ca_pin, then lets the PALISADE_* variables win, then vets the values.
read_settings() {
  collector_url= enroll_secret= ca_pin=
  if [ -e "$preseed_file" ]; then
    [ -f "$preseed_file" ] && [ -r "$preseed_file" ] ||
      die "$preseed_file: not a readable file"
    line_number=0
    cr=$(printf '\r')
    # `|| [ -n "$line" ]`: a last line without a newline still counts.
    while IFS= read -r line || [ -n "$line" ]; do
      line_number=$((line_number + 1))
      line=${line%"$cr"} # a file written on Windows
      line=$(trim "$line")
      case $line in '' | '#'*) continue ;; esac
      case $line in
        *=*) ;;
        *) die "$preseed_file:$line_number: not KEY=VALUE (known keys: COLLECTOR_URL, ENROLL_SECRET, CA_PIN)" ;;
      esac
      key=$(trim "${line%%=*}")
      value=$(trim "${line#*=}")
      # One pair of matching quotes around a value is shell habit, not data.
      case $value in
        \"*\" | \'*\') value=${value#?}; value=${value%?} ;;
      esac
      case $key in
        COLLECTOR_URL) collector_url=$value ;;
        ENROLL_SECRET) enroll_secret=$value ;;
        CA_PIN) ca_pin=$value ;;
        *) die "$preseed_file:$line_number: unknown key '$key' (known keys: COLLECTOR_URL, ENROLL_SECRET, CA_PIN)" ;;
      esac
    done <"$preseed_file"
  fi
  collector_url=${PALISADE_COLLECTOR_URL:-$collector_url}
  enroll_secret=${PALISADE_ENROLL_SECRET:-$enroll_secret}
  ca_pin=${PALISADE_CA_PIN:-$ca_pin}

  # collector_url and ca_pin go into agent.toml as basic TOML strings, so a
  # quote, a backslash or a line break would end or bend the string.
  check_toml_safe COLLECTOR_URL "$collector_url"
  check_toml_safe CA_PIN "$ca_pin"
  # The agent decides what a valid URL and pin are (and says so at start);
  # these catch what is certainly wrong while the install can still stop.
  case $collector_url in
    '' | https://* | http://*) ;;
    *) die "COLLECTOR_URL must start with https:// (got something else)" ;;
  esac
  case $ca_pin in
    '' | sha256/*) ;;
    *) die "CA_PIN must be sha256/<base64> (got something else)" ;;
  esac
  # The secret file's first line is the secret (installer.rs).
  case $enroll_secret in
    *"
"*) die "ENROLL_SECRET must be one line" ;;
  esac
}

check_toml_safe() {
  case $2 in
    *\"* | *\\* | *"
"* | *"$(printf '\r')"*)
      die "$1 must not contain a quote, a backslash or a line break"
      ;;
  esac
}

# The uid of the user logged in at the console, printed; nothing when the
# login window is showing or no one is logged in. scutil's ConsoleUser key
# is Apple's answer (its Name is "loginwindow" at the login window); its
# output is a dictionary with "Name : alice" and "UID : 501" lines.
console_uid() {
  echo 'show State:/Users/ConsoleUser' | scutil 2>/dev/null | awk '
    $1 == "Name" && $2 == ":" { name = $3 }
    $1 == "UID" && $2 == ":" { uid = $3 }
    END { if (name != "" && name != "loginwindow" && name != "root" && uid ~ /^[0-9]+$/ && uid != 0) print uid }
  ' || true
}
