# The RPM package's scriptlets, after maintainer.sh (see there). $1 counts
# the package's instances after the step (1 install, 2 upgrade, 0 erase);
# the systemd steps are those of Fedora's %systemd_post and %systemd_preun.

palisade_rpm_pre() {
  palisade_settings
}

palisade_rpm_post() {
  palisade_configure
  if palisade_systemd_running; then
    systemctl daemon-reload >/dev/null 2>&1 || true
    systemctl enable "$PALISADE_UNIT" >/dev/null 2>&1 || true
    if [ "$1" -gt 1 ]; then palisade_action=try-restart; else palisade_action=start; fi
    systemctl "$palisade_action" "$PALISADE_UNIT" >/dev/null 2>&1 || true
  elif command -v systemctl >/dev/null 2>&1 && [ "$1" -eq 1 ]; then
    # An image being built: enabled, it starts at first boot.
    systemctl enable "$PALISADE_UNIT" >/dev/null 2>&1 || true
  fi
}

palisade_rpm_preun() {
  [ "$1" -eq 0 ] || return 0
  if palisade_systemd_running; then
    systemctl --no-reload disable --now "$PALISADE_UNIT" >/dev/null 2>&1 || true
  elif command -v systemctl >/dev/null 2>&1; then
    systemctl --no-reload disable "$PALISADE_UNIT" >/dev/null 2>&1 || true
  fi
}

palisade_rpm_postun() {
  if palisade_systemd_running; then
    systemctl daemon-reload >/dev/null 2>&1 || true
  fi
}
