// The agent's channel identity: made once, kept (key 0600), the same after a restart, remade
// when its files do not belong together; a certificate OpenSSL and Node read as X.509 v3.
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { loadOrCreateIdentity } from '../../../../src/kube/channel/cert.ts';
import { time, unsigned, oid } from '../../../../src/kube/channel/der.ts';

describe('channel identity', () => {
  const root = mkdtempSync(join(tmpdir(), 'dmthin-cert-'));
  after(() => rmSync(root, { recursive: true, force: true }));

  it('is made once, kept with a private key only root reads, and found again', async () => {
    const dir = join(root, 'a', 'channel');
    const id = await loadOrCreateIdentity(dir, 'dmthin-csi node n1');
    assert.equal(statSync(join(dir, 'key.pem')).mode & 0o777, 0o600);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    const again = await loadOrCreateIdentity(dir, 'dmthin-csi node n1');
    assert.equal(again.fingerprint, id.fingerprint);
    const der = new X509Certificate(id.certPem).raw;
    const hex = createHash('sha256').update(der).digest('hex').toUpperCase().match(/../g)!.join(':');
    assert.equal(id.fingerprint, hex, 'the fingerprint is the SHA-256 of the DER');
  });

  it('is a self-signed X.509 v3 ECDSA P-256 server certificate', async () => {
    const id = await loadOrCreateIdentity(join(root, 'b'), 'dmthin-csi node n2');
    const cert = new X509Certificate(id.certPem);
    assert.equal(cert.subject, 'CN=dmthin-csi node n2');
    assert.equal(cert.issuer, cert.subject);
    assert.ok(cert.verify(cert.publicKey), 'signed by its own key');
    assert.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.equal(cert.ca, false);
    assert.deepEqual(cert.keyUsage, ['1.3.6.1.5.5.7.3.1']);
    assert.ok(Date.parse(cert.validFrom) <= Date.now() && Date.parse(cert.validTo) > Date.now() + 10 * 365 * 86400_000);
    const text = execFileSync('openssl', ['x509', '-noout', '-text'], { input: id.certPem, encoding: 'utf8' });
    assert.match(text, /Version: 3 \(0x2\)/);
    assert.match(text, /Signature Algorithm: ecdsa-with-SHA256/);
  });

  it('is remade when the certificate is not of the kept key, or a file is damaged', async () => {
    const dir = join(root, 'c');
    const first = await loadOrCreateIdentity(dir, 'n');
    const other = await loadOrCreateIdentity(join(root, 'd'), 'n');
    writeFileSync(join(dir, 'cert.pem'), other.certPem); // as if a crash left another key's certificate
    const remade = await loadOrCreateIdentity(dir, 'n');
    assert.notEqual(remade.fingerprint, first.fingerprint);
    assert.notEqual(remade.fingerprint, other.fingerprint);
    writeFileSync(join(dir, 'key.pem'), 'garbage');
    const again = await loadOrCreateIdentity(dir, 'n');
    assert.notEqual(again.fingerprint, remade.fingerprint);
    assert.equal(readFileSync(join(dir, 'key.pem'), 'utf8'), again.keyPem);
  });
});

describe('DER pieces', () => {
  it('encodes integers minimally and positive, object ids and both time forms', () => {
    assert.equal(unsigned(Buffer.from([0, 0, 0x7f])).toString('hex'), '02017f');
    assert.equal(unsigned(Buffer.from([0x80])).toString('hex'), '02020080');
    assert.equal(oid('1.2.840.10045.4.3.2').toString('hex'), '06082a8648ce3d040302');
    assert.equal(time(new Date('2049-12-31T23:59:59Z')).toString('ascii', 2), '491231235959Z');
    assert.equal(time(new Date('2050-01-01T00:00:00Z')).toString('ascii', 2), '20500101000000Z');
    assert.equal(time(new Date('2050-01-01T00:00:00Z'))[0], 0x18);
  });
});
