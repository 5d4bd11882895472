# Sourced by the bench scripts (from the repository's root).
#
# wait_for_url URL [LOG]: waits up to 30 s for URL to answer at all; otherwise prints
# the end of LOG, if given, and exits.
wait_for_url() {
  for _ in $(seq 1 150); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.2
  done
  echo "$1 did not answer" >&2
  if [ -n "${2:-}" ]; then tail -n 20 "$2" >&2; fi
  exit 1
}
