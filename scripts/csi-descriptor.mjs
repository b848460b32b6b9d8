// csi.proto as protobufjs JSON (names as written: keepCase), the form src/csi/proto.ts loads.
// Shared by scripts/generate-types.mjs and the test that the committed copy is current.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export function csiDescriptor(protoFile = 'proto/csi.proto') {
  require('@grpc/proto-loader'); // registers google/protobuf/*.proto, which csi.proto imports
  const { loadProtosWithOptionsSync } = require('@grpc/proto-loader/build/src/util.js');
  return loadProtosWithOptionsSync(protoFile, { keepCase: true }).toJSON();
}
