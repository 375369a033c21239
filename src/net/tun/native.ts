// Access to the native addon (native/cyphonic_native.c) for the TUN code: availability check with a reason,
// and a getter that throws a typed TunError instead of returning null. The loader itself lives in native/addon.ts.
import { loadNativeAddon, nativeLoadError, type NativeAddon } from '../../native/addon.js';
import { TunError } from './tun.js';

export type { NativeAddon } from '../../native/addon.js';

/** True if cyphonic_native.node is built and loads in this thread. */
export function nativeAvailable(): boolean {
  return loadNativeAddon() !== null;
}

/** Why the addon is unavailable ('' when it is available). */
export function nativeUnavailableReason(): string {
  return nativeAvailable() ? '' : nativeLoadError();
}

/** The addon, or TunError ERR_NATIVE_UNAVAILABLE carrying the load failure reason. */
export function requireNative(): NativeAddon {
  const addon = loadNativeAddon();
  if (addon === null) throw new TunError('ERR_NATIVE_UNAVAILABLE', `native addon unavailable: ${nativeLoadError()}`);
  return addon;
}
