# The Debian package's maintainer scripts, after maintainer.sh (see there).
# dpkg's arguments: deb-preinst(5), deb-postinst(5), deb-prerm(5),
# deb-postrm(5). The systemd steps are those debhelper's dh_installsystemd
# writes (init-system-helpers is Essential), so an administrator's
# `systemctl disable` survives upgrades.

# deb-systemd-invoke honours policy-rc.d (no starts in a chroot being
# built); a root without it (a test's) runs no systemd either.
palisade_deb_invoke() {
  if command -v deb-systemd-invoke >/dev/null 2>&1; then
    deb-systemd-invoke "$1" "$PALISADE_UNIT" >/dev/null || true
  fi
}

palisade_deb_preinst() {
  case $1 in install | upgrade) palisade_settings ;; esac
}

palisade_deb_postinst() {
  case $1 in configure | abort-upgrade | abort-deconfigure | abort-remove) ;; *) return 0 ;; esac
  [ "$1" != configure ] || palisade_configure
  if command -v deb-systemd-helper >/dev/null 2>&1; then
    deb-systemd-helper unmask "$PALISADE_UNIT" >/dev/null || true
    if deb-systemd-helper --quiet was-enabled "$PALISADE_UNIT"; then
      deb-systemd-helper enable "$PALISADE_UNIT" >/dev/null || true
    else
      deb-systemd-helper update-state "$PALISADE_UNIT" >/dev/null || true
    fi
  fi
  if palisade_systemd_running; then
    systemctl --system daemon-reload >/dev/null || true
    if [ -n "$2" ]; then palisade_action=restart; else palisade_action=start; fi
    palisade_deb_invoke "$palisade_action"
  fi
}

palisade_deb_prerm() {
  if [ "$1" = remove ] && palisade_systemd_running; then
    palisade_deb_invoke stop
  fi
}

palisade_deb_postrm() {
  if [ "$1" = remove ] && palisade_systemd_running; then
    systemctl --system daemon-reload >/dev/null || true
  fi
  if command -v deb-systemd-helper >/dev/null 2>&1; then
    case $1 in
      remove) deb-systemd-helper mask "$PALISADE_UNIT" >/dev/null || true ;;
      purge)
        deb-systemd-helper purge "$PALISADE_UNIT" >/dev/null || true
        deb-systemd-helper unmask "$PALISADE_UNIT" >/dev/null || true
        ;;
    esac
  fi
  [ "$1" != purge ] || palisade_purge
}

