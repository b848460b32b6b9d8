import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType } from './generated/csi.ts';

/** Must match scripts/generate-types.mjs, or the generated types misdescribe the wire objects. */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true,
};

/** Candidates relative to this module: src/csi/ when run from source, dist/ when bundled. */
function protoPath(): string {
  const candidates = [
    process.env.CSI_PROTO_PATH,
    fileURLToPath(new URL('../../proto/csi.proto', import.meta.url)),
    fileURLToPath(new URL('../proto/csi.proto', import.meta.url)),
    '/usr/share/dmthin-csi/csi.proto',
  ].filter((p): p is string => Boolean(p));
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`csi.proto not found (looked in ${candidates.join(', ')}); set CSI_PROTO_PATH`);
  return found;
}

let cached: ProtoGrpcType | undefined;

export function loadCsi(): ProtoGrpcType {
  cached ??= grpc.loadPackageDefinition(protoLoader.loadSync(protoPath(), LOADER_OPTIONS)) as unknown as ProtoGrpcType;
  return cached;
}
