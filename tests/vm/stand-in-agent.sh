#!/bin/sh
# Stand-in for palisade-agent while the real `check` command is being
# written: tests/vm/luks-guest.sh must not care what binary it runs, so this
# prints the raw facts the disk check reads instead of a verdict. It ignores
# its arguments (the harness passes "check --rule disk_encryption --json").
cat /proc/self/mountinfo
ls -l /sys/class/block/*/slaves
cat /sys/class/block/dm-*/dm/uuid
