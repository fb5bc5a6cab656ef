#!/usr/bin/env bash
# Builds examples/js-transfer with componentize-js (the SpiderMonkey engine) instead of its
# pinned QuickJS backend, for the host_path benchmark's `spidermonkey transfer`: how the
# JavaScript engine that examples/js-transfer does not use compares. Prints the component's
# path; run the benchmark with
#   WASMTX_BENCH_SPIDERMONKEY=$(scripts/build-spidermonkey-transfer.sh) cargo bench -p wasmtx --bench host_path -- transfer
# The toolchain (about 340 MB of npm packages) goes to target/toolchains/spidermonkey.
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.22.0
tools=$PWD/target/toolchains/spidermonkey
out=$tools/build
mkdir -p "$out"
if [ ! -f "$tools/node_modules/@bytecodealliance/componentize-js/package.json" ] ||
   ! grep -q "\"version\": \"$version\"" "$tools/node_modules/@bytecodealliance/componentize-js/package.json"; then
  (cd "$tools" && npm install --no-audit --no-fund --silent "@bytecodealliance/componentize-js@$version" rolldown@1 >&2)
fi
(cd examples/js-transfer && { [ -d node_modules ] || npm ci --no-audit --no-fund --silent >&2; })
# One ES module with the SDK inlined (componentize-js resolves no packages), and the WIT.
"$tools/node_modules/.bin/rolldown" examples/js-transfer/app.js --format esm -o "$out/app.js" >&2
rm -rf "$out/wit" && cp -r wit "$out/wit"
cat > "$tools/componentize.mjs" <<'JS'
import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';
const { component } = await componentize({
  sourcePath: 'build/app.js',
  witPath: 'build/wit',
  worldName: 'script',
  // wasmtx provides no wasi:http: leave out the fetch-event handler that imports it.
  disableFeatures: ['http', 'fetch-event'],
});
await writeFile('build/js-transfer-spidermonkey.wasm', component);
JS
(cd "$tools" && node componentize.mjs >&2)
echo "$out/js-transfer-spidermonkey.wasm"
