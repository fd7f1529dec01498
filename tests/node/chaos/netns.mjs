// A network namespace for one gateway, joined to the host by two veth pairs: one that carries
// only its Valkey traffic and one for everything else (nginx to it, it to the app). Taking the
// host end of the Valkey pair down cuts that link silently: no RST, no FIN, packets just vanish
// (the kernel here has no netem), which is what a partition looks like to both sides.
//
// Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and iproute2; netnsAvailable() says whether it works.
import { execFileSync } from "node:child_process";

const ip = (...args) => execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] });

/** Whether namespaces and veth pairs can be made here (tries once, cleans up). */
export function netnsAvailable() {
  const name = `sgwprobe${process.pid % 100000}`;
  try {
    ip("netns", "add", name);
    ip("netns", "del", name);
    return true;
  } catch {
    return false;
  }
}

/**
 * Creates the namespace and its links. Resolves to {name, valkeyHostIp, mainHostIp, mainNsIp,
 * cut(), heal(), destroy()}: Valkey and the app listen on the host IPs, the gateway on mainNsIp.
 */
export function createNetns() {
  const id = process.pid % 100000;
  const name = `sgwchaos${id}`;
  // A /24 of 10.0.0.0/8 per run, from the pid (two runs at once get different ones).
  const octet = 20 + (process.pid % 200);
  const net = (k) => `10.${octet}.${k}`;
  const links = {
    valkey: { host: `cv${id}vh`, ns: `cv${id}vn`, hostIp: `${net(1)}.1`, nsIp: `${net(1)}.2` },
    main: { host: `cv${id}mh`, ns: `cv${id}mn`, hostIp: `${net(2)}.1`, nsIp: `${net(2)}.2` },
  };
  const destroy = () => {
    for (const l of Object.values(links)) {
      try {
        ip("link", "del", l.host);
      } catch {}
    }
    try {
      ip("netns", "del", name);
    } catch {}
  };
  destroy(); // leftovers of a crashed run with the same pid
  try {
    ip("netns", "add", name);
    ip("-n", name, "link", "set", "lo", "up");
    for (const l of Object.values(links)) {
      ip("link", "add", l.host, "type", "veth", "peer", "name", l.ns);
      ip("link", "set", l.ns, "netns", name);
      ip("addr", "add", `${l.hostIp}/30`, "dev", l.host);
      ip("link", "set", l.host, "up");
      ip("-n", name, "addr", "add", `${l.nsIp}/30`, "dev", l.ns);
      ip("-n", name, "link", "set", l.ns, "up");
    }
  } catch (err) {
    destroy();
    throw new Error(`cannot create the network namespace: ${err.stderr?.toString() || err.message}`);
  }
  return {
    name,
    valkeyHostIp: links.valkey.hostIp,
    mainHostIp: links.main.hostIp,
    mainNsIp: links.main.nsIp,
    /** Cuts the gateway's link to Valkey (host end down: its packets are dropped silently). */
    cut: () => ip("link", "set", links.valkey.host, "down"),
    heal: () => ip("link", "set", links.valkey.host, "up"),
    destroy,
  };
}
