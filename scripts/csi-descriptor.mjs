// csi.proto as protobufjs JSON (names as written: keepCase), the form src/csi/proto.ts loads.
// Shared by scripts/generate-types.mjs and the test that the committed copy is current.
// Only what the wire needs is kept: csi.v1's option extensions (alpha_field, csi_secret, ...)
// annotate the spec and change no message, and without them none of descriptor.proto's
// types is needed, only the well-known types CSI messages hold (Timestamp, wrappers).
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export function csiDescriptor(protoFile = 'proto/csi.proto') {
  require('@grpc/proto-loader'); // registers google/protobuf/*.proto, which csi.proto imports
  const { loadProtosWithOptionsSync } = require('@grpc/proto-loader/build/src/util.js');
  const json = loadProtosWithOptionsSync(protoFile, { keepCase: true }).toJSON();
  const v1 = json.nested.csi.nested.v1.nested;
  for (const [name, def] of Object.entries(v1)) if (def && typeof def === 'object' && 'extend' in def) delete v1[name];
  const used = new Set(JSON.stringify(json.nested.csi).match(/(?<=google\.protobuf\.)\w+/g) ?? []);
  const wellKnown = json.nested.google.nested.protobuf.nested;
  for (const name of Object.keys(wellKnown)) if (!used.has(name)) delete wellKnown[name];
  return json;
}
