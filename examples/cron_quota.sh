#!/bin/sh
# A nightly cron or CI job: alert when the month's messages pass 80 % of the
# plan, and keep one CSV of daily usage per day. Every other limit is left
# alone (--limit), and a quota alert (exit 3) is told apart from a failure to
# check at all (network, credentials, server: any other non-zero status).
#
#   MOLTFLOW_API_KEY=mf_...   a key with billing:manage (quota) and usage:read (CSV)
#   MOLTFLOW_API_URL=...      optional: the API host, with or without /api/v2
#   QUOTA_LIMIT=messages QUOTA_PERCENT=80 CSV_DIR=/var/lib/moltflow   (the defaults)
#   MOLTFLOW_ADMIN=moltflow-admin     (the command: found on PATH, else where
#                                      make install, LuaRocks and the .deb put it)
#
# Copy this script where cron can run it (for example ~/bin/cron_quota.sh, chmod
# 755). cron runs jobs with PATH=/usr/bin:/bin, so the crontab names the
# directory of moltflow-admin: /usr/local/bin (make install), ~/.luarocks/bin
# (LuaRocks; write it out, cron does not expand ~ in PATH), /usr/bin (the .deb):
#
#   PATH=/usr/local/bin:/usr/bin:/bin
#   15 2 * * *  MOLTFLOW_API_KEY=mf_... $HOME/bin/cron_quota.sh
#
# Exit status: 0 fine, 3 over the threshold, else moltflow-admin's status
# (4 credentials, 5 network; see 'moltflow-admin --help').
set -u
admin=${MOLTFLOW_ADMIN:-}
if [ -z "$admin" ]; then
  for candidate in moltflow-admin /usr/local/bin/moltflow-admin "${HOME:-/nonexistent}/.luarocks/bin/moltflow-admin"; do
    if command -v "$candidate" >/dev/null 2>&1; then admin=$candidate; break; fi
  done
fi
if [ -z "$admin" ]; then
  echo "ERROR: moltflow-admin not found on PATH ($PATH), in /usr/local/bin or ~/.luarocks/bin;" \
       "set PATH or MOLTFLOW_ADMIN in the crontab" >&2
  exit 127
fi
limit=${QUOTA_LIMIT:-messages}
percent=${QUOTA_PERCENT:-80}
csv_dir=${CSV_DIR:-/var/lib/moltflow}

"$admin" quota --limit "$limit" --fail-above "$percent"
status=$?
case $status in
  0) ;;
  3) echo "ALERT: $limit above $percent% of the plan" >&2 ;;
  *) echo "ERROR: could not check the quota (moltflow-admin exit $status)" >&2; exit "$status" ;;
esac

# The CLI writes the file atomically (a new file renamed over the old), so a
# reader never sees half a CSV and a failed run leaves yesterday's intact.
mkdir -p "$csv_dir" || exit 1
"$admin" usage daily --days 1 --csv --output "$csv_dir/usage-$(date -u +%Y-%m-%d).csv" || exit $?
exit "$status"
