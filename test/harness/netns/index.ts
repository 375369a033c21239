// Public entry point of the netns testbed harness used by e2e tests and the demo.
// Re-exports the Testbed/Host/Site API plus the low-level process and cleanup helpers.

export { Testbed, Host, GLOBAL_V4, GLOBAL_V6 } from './testbed.js';
export type { Site, Family, NatKind, SpawnOpts, ExecResult, ExecOptions } from './testbed.js';
export { killGroup } from './proc.js';
export { sweepStale, pidAlive, MARKER_DIR } from './cleanup.js';
export { WAN_PROFILES, wanProfile, wanSpec, wanemBinary } from './wan.js';
export type { WanProfile, WanProfileName, WanDirection, WanStats, WanDirStats } from './wan.js';
