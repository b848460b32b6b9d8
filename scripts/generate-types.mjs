// Regenerates src/csi/generated from proto/csi.proto: the TypeScript types, and the JSON
// descriptor src/csi/proto.ts builds the services from. The options must match CONVERSION in
// src/csi/proto.ts, or the types will lie about the wire shape.
import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { csiDescriptor } from './csi-descriptor.mjs';

const out = 'src/csi/generated';
rmSync(out, { recursive: true, force: true });
execFileSync('proto-loader-gen-types', [
  '--keepCase', '--longs=Number', '--enums=String', '--defaults', '--oneofs',
  '--grpcLib=@grpc/grpc-js', '-I', 'proto', '-O', out, 'csi.proto',
], { stdio: 'inherit' });
writeFileSync(`${out}/csi.json`, `${JSON.stringify(csiDescriptor(), null, 1)}\n`);
