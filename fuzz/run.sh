#!/usr/bin/env bash
# Runs every fuzz target for a bounded time on the stable toolchain and fails on any
# crash (a panic, a broken property, a hang). See fuzz/README.md.
#
#   FUZZ_SECONDS  seconds per target (default 30)
#   FUZZ_TARGETS  the targets to run (default: all of them)
set -euo pipefail
cd "$(dirname "$0")"

CARGO_FUZZ_VERSION=0.13.2
seconds=${FUZZ_SECONDS:-30}
read -r -a targets <<< "${FUZZ_TARGETS:-ws_frame rest_query rest_body pusher_frame}"

# Stable Rust: no sanitizer (the sanitizers need nightly); libFuzzer's coverage
# instrumentation and the harness's own checks still run. 16 codegen units instead of
# cargo-fuzz's 1 keep the first build within a few minutes. `build` and `run` get the
# same flags, so `run` reuses what `build` compiled.
flags=(--sanitizer none --codegen-units 16)

if [ "$(cargo fuzz --version 2>/dev/null || true)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  echo "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

cargo fuzz build "${flags[@]}"

for target in "${targets[@]}"; do
  echo "==> $target: $seconds s"
  # New inputs go to a scratch corpus under target/; the committed seeds are only read.
  mkdir -p "target/corpus/$target"
  cargo fuzz run "${flags[@]}" "$target" "target/corpus/$target" "corpus/$target" -- \
    -max_total_time="$seconds" \
    -timeout=20 \
    -max_len=4096 \
    -rss_limit_mb=4096 \
    -dict="dict/$target.dict" \
    -print_final_stats=1 \
    2> "target/$target.log" || {
      tail -n 80 "target/$target.log"
      echo "fuzz target $target failed; the input is in fuzz/artifacts/$target/" >&2
      exit 1
    }
  grep -E '^(Done|stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added|stat::peak_rss_mb)' \
    "target/$target.log" || true
done
