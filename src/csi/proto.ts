import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs/light.js';
import type { ProtoGrpcType } from './generated/csi.ts';
import descriptor from './generated/csi.json' with { type: 'json' };

/**
 * How messages become objects; must match scripts/generate-types.mjs, or the generated types
 * misdescribe the wire objects. (Field names stay as in csi.proto: the JSON was made with keepCase.)
 */
export const CONVERSION: protobuf.IConversionOptions = { longs: Number, enums: String, defaults: true, oneofs: true };

/** The CSI services, as grpc-js serves and calls them. */
export const SERVICES = ['csi.v1.Identity', 'csi.v1.Controller', 'csi.v1.Node', 'csi.v1.GroupController', 'csi.v1.SnapshotMetadata'] as const;

const lowerFirst = (s: string) => s.charAt(0).toLowerCase() + s.slice(1);

function serializer(type: protobuf.Type): grpc.serialize<unknown> {
  return (value) => {
    if (Array.isArray(value)) throw new Error(`cannot serialize an array as ${type.name}`);
    return Buffer.from(type.encode(type.fromObject(value as Record<string, unknown>)).finish());
  };
}

function deserializer(type: protobuf.Type): grpc.deserialize<unknown> {
  return (bytes) => type.toObject(type.decode(bytes), CONVERSION);
}

function serviceDefinition(root: protobuf.Root, name: string): grpc.ServiceDefinition {
  const service = root.lookupService(name);
  const def: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const method of service.methodsArray) {
    method.resolve();
    const req = method.resolvedRequestType!;
    const res = method.resolvedResponseType!;
    def[method.name] = {
      path: `/${name}/${method.name}`,
      requestStream: Boolean(method.requestStream),
      responseStream: Boolean(method.responseStream),
      requestSerialize: serializer(req),
      requestDeserialize: deserializer(req),
      responseSerialize: serializer(res),
      responseDeserialize: deserializer(res),
      originalName: lowerFirst(method.name),
    };
  }
  return def;
}

/**
 * The CSI package for grpc-js, built from csi.proto's JSON descriptor (generated, committed).
 * Not @grpc/proto-loader at run time: it parses the .proto and builds descriptors of every
 * message, which in the emulated test guest was a quarter of a node agent's start. Message
 * codecs are compiled by protobufjs on first use, for the messages actually sent.
 */
export function csiPackageDefinition(): Record<string, grpc.ServiceDefinition> {
  const root = protobuf.Root.fromJSON(descriptor as protobuf.INamespace);
  return Object.fromEntries(SERVICES.map((name) => [name, serviceDefinition(root, name)]));
}

let cached: ProtoGrpcType | undefined;

export function loadCsi(): ProtoGrpcType {
  cached ??= grpc.loadPackageDefinition(csiPackageDefinition()) as unknown as ProtoGrpcType;
  return cached;
}
