#!/usr/bin/env node
// The `cyphonic` command: runs the compiled CLI (npm run build first).
import { main } from '../dist/src/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`cyphonic: ${err?.message ?? err}\n`);
    process.exitCode = 1;
  },
);
