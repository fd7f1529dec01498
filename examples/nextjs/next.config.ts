import type { NextConfig } from "next";

const config: NextConfig = {
  // The native SQLite driver stays a Node require, not bundled.
  serverExternalPackages: ["better-sqlite3"],
  // No telemetry, no image optimisation service: nothing here needs them.
  images: { unoptimized: true },
  poweredByHeader: false,
};

export default config;
