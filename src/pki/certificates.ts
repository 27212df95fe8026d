import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  X509Certificate as NodeX509Certificate,
  webcrypto,
} from 'node:crypto'
import {isIP} from 'node:net'
// @peculiar/x509 resolves its algorithms through tsyringe, which needs the Reflect metadata API loaded first.
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'

export interface CertificateAndKey {
  certPem: string
  keyPem: string
}

export type CertificateUsage = 'server' | 'client' | 'both'

export interface CertificateAuthorityOptions {
  commonName: string
  validityDays: number
}

export interface IssueCertificateOptions {
  commonName: string
  organizations?: string[]
  dnsNames?: string[]
  ipAddresses?: string[]
  /** URI subject alternative names (a client certificate's binding to what it may reach, for example). */
  uris?: string[]
  usage: CertificateUsage
  validityDays?: number
  /** Overrides the computed start of validity (e.g. to create an already expired certificate). */
  notBefore?: Date
  /** Overrides the end of validity computed from validityDays. */
  notAfter?: Date
  /** The subject's private key (PKCS#8 PEM) to certify; without it a new key is made. A kept key keeps its pin. */
  keyPem?: string
}

export interface KeyPairPem {
  privateKeyPem: string
  publicKeyPem: string
}

const keyAlgorithm: webcrypto.EcKeyImportParams = {name: 'ECDSA', namedCurve: 'P-256'}
const signingAlgorithm: webcrypto.EcdsaParams = {name: 'ECDSA', hash: 'SHA-256'}
const defaultLeafValidityDays = 365
const dayInMs = 24 * 60 * 60 * 1000
// Backdating absorbs small clock differences between the issuer and whoever validates the certificate.
const clockSkewAllowanceMs = 5 * 60 * 1000

export async function createCertificateAuthority(
  options: CertificateAuthorityOptions,
): Promise<CertificateAndKey> {
  const keys = await generateSigningKeys()
  const {notBefore, notAfter} = validityWindow(options.validityDays)
  const certificate = await x509.X509CertificateGenerator.createSelfSigned(
    {
      name: [{CN: [options.commonName]}],
      keys,
      notBefore,
      notAfter,
      signingAlgorithm,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature,
          true,
        ),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, webcrypto),
      ],
    },
    webcrypto,
  )
  return {certPem: certificate.toString('pem'), keyPem: await exportPrivateKeyPem(keys.privateKey)}
}

export async function issueCertificate(
  ca: CertificateAndKey,
  options: IssueCertificateOptions,
): Promise<CertificateAndKey> {
  const caCertificate = new x509.X509Certificate(ca.certPem)
  const caKey = await webcrypto.subtle.importKey(
    'pkcs8',
    x509.PemConverter.decodeFirst(ca.keyPem),
    keyAlgorithm,
    false,
    ['sign'],
  )
  const keys =
    options.keyPem === undefined ? await generateSigningKeys() : await importKeyPair(options.keyPem)
  const {notBefore, notAfter} = validityWindow(options.validityDays ?? defaultLeafValidityDays, options)
  const subjectAlternativeNames = [
    ...(options.dnsNames ?? []).map((value) => ({type: 'dns' as const, value})),
    ...(options.ipAddresses ?? []).map((value) => ({type: 'ip' as const, value})),
    ...(options.uris ?? []).map((value) => ({type: 'url' as const, value})),
  ]
  const certificate = await x509.X509CertificateGenerator.create(
    {
      subject: [...(options.organizations ?? []).map((o) => ({O: [o]})), {CN: [options.commonName]}],
      issuer: caCertificate.subjectName,
      publicKey: keys.publicKey,
      signingKey: caKey,
      notBefore,
      notAfter,
      signingAlgorithm,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension(extendedKeyUsages(options.usage)),
        ...(subjectAlternativeNames.length > 0
          ? [new x509.SubjectAlternativeNameExtension(subjectAlternativeNames)]
          : []),
        await x509.AuthorityKeyIdentifierExtension.create(caCertificate, false, webcrypto),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, webcrypto),
      ],
    },
    webcrypto,
  )
  return {
    certPem: certificate.toString('pem'),
    keyPem: options.keyPem ?? (await exportPrivateKeyPem(keys.privateKey)),
  }
}

/** An ECDSA P-256 key pair, e.g. for signing service-account tokens. */
export function generateKeyPairPem(): KeyPairPem {
  const {privateKey, publicKey} = generateKeyPairSync('ec', {
    namedCurve: 'prime256v1',
    privateKeyEncoding: {type: 'pkcs8', format: 'pem'},
    publicKeyEncoding: {type: 'spki', format: 'pem'},
  })
  return {privateKeyPem: privateKey, publicKeyPem: publicKey}
}

/** Identifies a certificate by its public key, so a pin survives re-issuing with the same key. */
export function certificateFingerprint(certPem: string): string {
  const publicKeyDer = new NodeX509Certificate(certPem).publicKey.export({type: 'spki', format: 'der'})
  return `sha256:${createHash('sha256').update(publicKeyDer).digest('hex')}`
}

/** The pin (`sha256:<hex>` of the SubjectPublicKeyInfo) of the certificates a private key (PEM) is certified in. */
export function privateKeyFingerprint(keyPem: string): string {
  const publicKeyDer = createPublicKey(createPrivateKey(keyPem)).export({type: 'spki', format: 'der'})
  return `sha256:${createHash('sha256').update(publicKeyDer).digest('hex')}`
}

/**
 * Whether a certificate should be renewed now: from two thirds of its validity on (as kubelet rotates its
 * certificates between 70 and 90 %), so that a renewal that fails has a third of the validity to be retried.
 */
export function renewalDue(certPem: string, now: Date, fraction = 2 / 3): boolean {
  return now.getTime() >= renewalTime(certPem, fraction).getTime()
}

/** When {@link renewalDue} turns true. */
export function renewalTime(certPem: string, fraction = 2 / 3): Date {
  const certificate = new NodeX509Certificate(certPem)
  const from = certificate.validFromDate.getTime()
  return new Date(from + (certificate.validToDate.getTime() - from) * fraction)
}

/** Whether `certPem` was signed by the CA `caPem` (its issuer name and signature), e.g. not by a CA rotated out. */
export function issuedBy(certPem: string, caPem: string): boolean {
  const certificate = new NodeX509Certificate(certPem)
  const ca = new NodeX509Certificate(caPem)
  return certificate.checkIssued(ca) && certificate.verify(ca.publicKey)
}

/** Whether the certificate is valid for every name (DNS names by host name rules, IP addresses exactly). */
export function coversNames(certPem: string, names: string[]): boolean {
  const certificate = new NodeX509Certificate(certPem)
  return names.every((name) =>
    isIP(name) === 0
      ? certificate.checkHost(name, {wildcards: false}) !== undefined
      : certificate.checkIP(name) !== undefined,
  )
}

/** Whether the certificate certifies the public key of `keyPem`. */
export function certifiesKey(certPem: string, keyPem: string): boolean {
  return new NodeX509Certificate(certPem).checkPrivateKey(createPrivateKey(keyPem))
}

async function importKeyPair(keyPem: string): Promise<webcrypto.CryptoKeyPair> {
  const privateKey = createPrivateKey(keyPem)
  const publicKeyDer = createPublicKey(privateKey).export({type: 'spki', format: 'der'})
  return {
    privateKey: await webcrypto.subtle.importKey(
      'pkcs8',
      privateKey.export({type: 'pkcs8', format: 'der'}),
      keyAlgorithm,
      true,
      ['sign'],
    ),
    publicKey: await webcrypto.subtle.importKey('spki', publicKeyDer, keyAlgorithm, true, ['verify']),
  }
}

async function generateSigningKeys(): Promise<webcrypto.CryptoKeyPair> {
  return webcrypto.subtle.generateKey({name: 'ECDSA', namedCurve: 'P-256'}, true, ['sign', 'verify'])
}

async function exportPrivateKeyPem(key: webcrypto.CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY')
}

function extendedKeyUsages(usage: CertificateUsage): x509.ExtendedKeyUsage[] {
  switch (usage) {
    case 'server':
      return [x509.ExtendedKeyUsage.serverAuth]
    case 'client':
      return [x509.ExtendedKeyUsage.clientAuth]
    case 'both':
      return [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]
  }
}

function validityWindow(
  validityDays: number,
  overrides: {notBefore?: Date; notAfter?: Date} = {},
): {notBefore: Date; notAfter: Date} {
  if (!(validityDays > 0)) throw new Error(`validityDays must be positive, got ${validityDays}`)
  const now = Date.now()
  // A certificate of minutes (tests of renewal) is backdated by a tenth of its life, so that most of it lies ahead.
  const backdateMs = Math.min(clockSkewAllowanceMs, (validityDays * dayInMs) / 10)
  const notBefore = overrides.notBefore ?? new Date(now - backdateMs)
  const notAfter = overrides.notAfter ?? new Date(now + validityDays * dayInMs)
  if (notAfter <= notBefore) {
    throw new Error(
      `notAfter (${notAfter.toISOString()}) must be after notBefore (${notBefore.toISOString()})`,
    )
  }
  return {notBefore, notAfter}
}
