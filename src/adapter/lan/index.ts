// The adapter's LAN side, pure (no sockets; the MLD listener's timers are injectable): codecs for Ethernet, ARP,
// IPv4/IPv6, DHCPv4, DHCPv6, NDP and MLD; the DHCP servers, the router advertiser, the MLD listener, the ARP/ND
// proxies, the classifier, the known-peer set and the lease table.

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
export * from './mld.js';
export * from './peers.js';
export * from './router.js';
export * from './proxy.js';
export * from './classify.js';
export * from './mtu.js';
export * from './leases.js';
export * from './notices.js';
