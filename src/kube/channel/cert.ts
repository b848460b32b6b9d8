/**
 * The node agent's channel identity: an ECDSA P-256 key it generates once and keeps under its
 * state directory (mode 0600), and a self-signed certificate of that key. The controller trusts
 * no CA: it pins the certificate's SHA-256 fingerprint, which the agent publishes in its ThinPool
 * status (only the node's ServiceAccount may write that status).
 *
 * Why a DER builder (der.ts) and not `openssl` through execa: Node's crypto generates and signs
 * with the key but cannot issue an X.509 certificate; the builder is ~60 lines with no new package
 * in the runtime image, no subprocess at start, and nothing to parse back; the certificate is only
 * ever checked by its fingerprint, so none of X.509's optional machinery matters.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { bitString, boolean, explicit, octetString, oid, sequence, set, time, unsigned, utf8 } from './der.ts';

export interface ChannelIdentity {
  keyPem: string;
  certPem: string;
  /** SHA-256 of the certificate's DER, as `AB:CD:…` (X509Certificate.fingerprint256, openssl's format). */
  fingerprint: string;
}

const ECDSA_SHA256 = sequence(oid('1.2.840.10045.4.3.2'));
const YEAR_MS = 365.25 * 24 * 3600 * 1000;

function extensions(): Buffer {
  const ext = (id: string, critical: boolean, value: Buffer) => sequence(oid(id), ...(critical ? [boolean(true)] : []), octetString(value));
  return explicit(3, sequence(
    ext('2.5.29.19', true, sequence()), // basicConstraints: not a CA
    ext('2.5.29.15', true, Buffer.from([0x03, 0x02, 0x07, 0x80])), // keyUsage: digitalSignature
    ext('2.5.29.37', false, sequence(oid('1.3.6.1.5.5.7.3.1'))), // extKeyUsage: serverAuth
  ));
}

/** A self-signed v3 certificate of `key`; valid from an hour ago (clock skew) for `years`. */
export function selfSigned(key: KeyObject, commonName: string, now = new Date(), years = 20): string {
  const name = sequence(set(sequence(oid('2.5.4.3'), utf8(commonName))));
  const spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
  const serial = randomBytes(16);
  serial[0]! &= 0x7f; // positive, and at most 20 octets as RFC 5280 asks
  const tbs = sequence(
    explicit(0, unsigned(Buffer.from([2]))),
    unsigned(serial),
    ECDSA_SHA256,
    name,
    sequence(time(new Date(now.getTime() - 3600_000)), time(new Date(now.getTime() + years * YEAR_MS))),
    name,
    spki,
    extensions(),
  );
  const der = sequence(tbs, ECDSA_SHA256, bitString(sign('sha256', tbs, key)));
  return `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/.{1,64}/g, '$&\n')}-----END CERTIFICATE-----\n`;
}

/** Written to a temporary name, synced, then renamed: a crash leaves the old file or the new one. */
async function writeAtomic(path: string, text: string, mode: number): Promise<void> {
  const tmp = `${path}.tmp`;
  const fh = await open(tmp, 'w', mode);
  try {
    await fh.chmod(mode); // an existing temporary file keeps its old mode otherwise
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
}

function usable(keyPem: string, certPem: string): ChannelIdentity | undefined {
  try {
    const cert = new X509Certificate(certPem);
    if (!cert.checkPrivateKey(createPrivateKey(keyPem))) return undefined;
    if (Date.parse(cert.validTo) < Date.now() + YEAR_MS) return undefined; // renewed well before it lapses
    return { keyPem, certPem, fingerprint: cert.fingerprint256 };
  } catch {
    return undefined;
  }
}

/**
 * The identity kept in `dir` (key.pem 0600, cert.pem), made on first use and remade when either
 * file is missing, unreadable, does not match the other, or nears its end: the fingerprint then
 * changes, and the agent publishes the new one before it serves with it.
 */
export async function loadOrCreateIdentity(dir: string, commonName: string): Promise<ChannelIdentity> {
  const keyPath = join(dir, 'key.pem');
  const certPath = join(dir, 'cert.pem');
  const [keyPem, certPem] = await Promise.all([readFile(keyPath, 'utf8').catch(() => ''), readFile(certPath, 'utf8').catch(() => '')]);
  const kept = usable(keyPem, certPem);
  if (kept) return kept;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const newKey = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  const newCert = selfSigned(privateKey, commonName);
  // Key first: a crash between the two leaves a certificate of the old key, which usable() refuses.
  await writeAtomic(keyPath, newKey, 0o600);
  await writeAtomic(certPath, newCert, 0o644);
  return usable(newKey, newCert)!;
}
