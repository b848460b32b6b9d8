import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GroupControllerService } from '../../../src/controller/groups.ts';
import { ControllerService } from '../../../src/controller/service.ts';
import { IdentityService } from '../../../src/csi/identity.ts';
import { loadCsi } from '../../../src/csi/proto.ts';
import { CONTROLLER_UNIMPLEMENTED } from '../../../src/csi/rpcs.ts';
import { NodeService } from '../../../src/node/service.ts';

/** The RPCs a class offers: its PascalCase methods (the helpers beside them are camelCase). */
const rpcsOf = (cls: { prototype: object }) =>
  Object.getOwnPropertyNames(cls.prototype).filter((m) => /^[A-Z]/.test(m) && typeof Reflect.get(cls.prototype, m) === 'function').sort();

describe('the RPCs the server wires', () => {
  const csi = loadCsi().csi.v1;
  const services = [
    { name: 'Identity', cls: IdentityService, def: csi.Identity.service, unimplemented: [] as readonly string[] },
    { name: 'Controller', cls: ControllerService, def: csi.Controller.service, unimplemented: CONTROLLER_UNIMPLEMENTED },
    { name: 'GroupController', cls: GroupControllerService, def: csi.GroupController.service, unimplemented: [] },
    { name: 'Node', cls: NodeService, def: csi.Node.service, unimplemented: [] },
  ];

  for (const s of services) {
    it(`${s.name}: every method is one of the proto's, and only the listed ones are left UNIMPLEMENTED`, () => {
      const proto = Object.keys(s.def).sort();
      const offered = rpcsOf(s.cls);
      assert.ok(offered.length > 0);
      assert.deepEqual(offered.filter((m) => !proto.includes(m)), [], 'methods the proto does not have would never be called');
      assert.deepEqual(s.unimplemented.filter((m) => !proto.includes(m)), []);
      assert.deepEqual(proto.filter((m) => !offered.includes(m)), [...s.unimplemented].sort());
    });
  }
});
