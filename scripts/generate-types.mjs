// Regenerates src/csi/generated from proto/csi.proto. The options must match
// LOADER_OPTIONS in src/csi/proto.ts, or the types will lie about the wire shape.
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';

const out = 'src/csi/generated';
rmSync(out, { recursive: true, force: true });
execFileSync('proto-loader-gen-types', [
  '--keepCase', '--longs=Number', '--enums=String', '--defaults', '--oneofs',
  '--grpcLib=@grpc/grpc-js', '-I', 'proto', '-O', out, 'csi.proto',
], { stdio: 'inherit' });
