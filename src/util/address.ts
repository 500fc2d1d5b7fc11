/** A peer address as people write it: IPv4-mapped IPv6 (`::ffff:127.0.0.1`) becomes `127.0.0.1`. */
export function plainAddress(address: string | undefined): string {
  if (address === undefined) return '';
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}
