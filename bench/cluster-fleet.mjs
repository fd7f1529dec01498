// Two gateways (release build unless CARGO_PROFILE says otherwise) on a fresh Valkey Cluster, for the bench
// scripts that measure the relay on a Cluster. Packages come from tests/node (scripts/setup.sh installs them);
// bench/ has none of its own.
import { createRequire } from "node:module";
import path from "node:path";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
export const requireFromTests = createRequire(path.join(root, "tests/node/package.json"));
process.env.VALKEY_SERVER ??= path.join(root, ".cache/bin/valkey-server");
process.env.CARGO_PROFILE ??= "release";
const { startValkeyCluster, gatewayClusterEnv } = await import("../tests/node/lib/valkey-cluster.mjs");
const { closeAllRedis } = await import("../tests/node/lib/valkey.mjs");
const { startGateway, closeAllClients } = await import("../tests/node/lib/gateway.mjs");
const { waitRelay } = await import("../tests/node/relay/helpers.mjs");

/**
 * A Cluster of `primaries` primaries and `gateways` gateways on it with the relay up, `env` on top of the
 * relay's settings. Resolves to {cluster, gws, stop()}; stop() closes every client, gateway and Valkey node.
 */
export async function startClusterFleet({ primaries, appUrl, env = {}, gateways = 2 }) {
  const cluster = await startValkeyCluster({ primaries, replicasPerPrimary: 0 });
  const gws = [];
  const stop = async () => {
    closeAllClients();
    await Promise.all(gws.map((g) => g.stop()));
    closeAllRedis();
    await cluster.stop();
  };
  try {
    const all = { GATEWAY_REDIS__ENABLED: "true", ...gatewayClusterEnv(cluster), ...env };
    for (let i = 0; i < gateways; i++) gws.push(await startGateway({ appUrl, env: all }));
    for (const gw of gws) await waitRelay(gw, "up");
  } catch (e) {
    await stop();
    throw e;
  }
  return { cluster, gws, stop };
}
