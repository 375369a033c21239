// The adapter's LAN side, pure (no sockets, no timers): codecs for Ethernet, ARP, IPv4/IPv6, DHCPv4,
// DHCPv6 and NDP; the DHCP servers, the router advertiser, the ARP/ND proxies, the classifier and the lease table.

export { LAN_ERR, type LanErrorCode } from './wire.js';
export * from './checksum.js';
export * from './ethernet.js';
export * from './arp.js';
export * from './ip.js';
export * from './dhcpv4.js';
export * from './dhcpv4-server.js';
export * from './dhcpv6.js';
export * from './dhcpv6-server.js';
export * from './ndp.js';
export * from './router.js';
export * from './proxy.js';
export * from './classify.js';
export * from './leases.js';
export * from './notices.js';
