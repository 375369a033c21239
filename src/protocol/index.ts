// Public entry point of the wire-protocol codec: re-exports constants, header, TLV, endpoint, frame and messages.
// Other layers may import from here or from the individual modules.

export * from './constants.js';
export * from './endpoint.js';
export * from './frame.js';
export * from './header.js';
export * from './ip.js';
export * from './messages.js';
export * from './tlv.js';
