import assert from 'node:assert/strict'
import {createHash, createPrivateKey, createPublicKey, sign, verify, X509Certificate} from 'node:crypto'
import {writeFile} from 'node:fs/promises'
import path from 'node:path'
import tls from 'node:tls'
import {execa} from 'execa'
import {
  type CertificateAndKey,
  certificateFingerprint,
  certifiesKey,
  coversNames,
  createCertificateAuthority,
  generateKeyPairPem,
  issueCertificate,
  issuedBy,
  privateKeyFingerprint,
  renewalDue,
  renewalTime,
} from '../../../src/pki/certificates.js'
import {tempDir} from '../../helpers/temp-dir.js'

const dayInMs = 24 * 60 * 60 * 1000
const clientAuthOid = '1.3.6.1.5.5.7.3.2'
const serverAuthOid = '1.3.6.1.5.5.7.3.1'

function assertPkcs8EcKey(keyPem: string): void {
  assert.match(keyPem, /^-----BEGIN PRIVATE KEY-----\n/)
  assert.equal(createPrivateKey(keyPem).asymmetricKeyType, 'ec')
}

function validityDays(certificate: X509Certificate): number {
  return (certificate.validToDate.getTime() - Date.now()) / dayInMs
}

describe('pki certificates', function () {
  let ca: CertificateAndKey
  let caCertificate: X509Certificate

  before(async function () {
    ca = await createCertificateAuthority({commonName: 'ksctl-test-ca', validityDays: 30})
    caCertificate = new X509Certificate(ca.certPem)
  })

  describe('createCertificateAuthority', function () {
    it('creates a self-signed CA certificate with a matching PKCS#8 EC key', function () {
      assert.equal(caCertificate.subject, 'CN=ksctl-test-ca')
      assert.equal(caCertificate.ca, true)
      assert.ok(caCertificate.checkIssued(caCertificate))
      assert.ok(caCertificate.verify(caCertificate.publicKey))
      assertPkcs8EcKey(ca.keyPem)
      assert.ok(caCertificate.checkPrivateKey(createPrivateKey(ca.keyPem)))
      assert.equal(caCertificate.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1')
    })

    it('lasts the requested number of days', function () {
      assert.ok(Math.abs(validityDays(caCertificate) - 30) < 0.01)
      assert.ok(caCertificate.validFromDate.getTime() <= Date.now())
    })
  })

  describe('issueCertificate', function () {
    it('issues a server certificate for the given host names and addresses', async function () {
      const server = await issueCertificate(ca, {
        commonName: 'kube-apiserver',
        dnsNames: ['localhost'],
        ipAddresses: ['127.0.0.1'],
        usage: 'server',
      })
      const certificate = new X509Certificate(server.certPem)
      assert.ok(certificate.checkIssued(caCertificate))
      assert.ok(certificate.verify(caCertificate.publicKey))
      assert.equal(certificate.ca, false)
      assert.equal(certificate.subjectAltName, 'DNS:localhost, IP Address:127.0.0.1')
      assert.equal(certificate.checkHost('localhost'), 'localhost')
      assert.equal(certificate.checkIP('127.0.0.1'), '127.0.0.1')
      assert.deepEqual(certificate.keyUsage, [serverAuthOid])
      assertPkcs8EcKey(server.keyPem)
      assert.ok(certificate.checkPrivateKey(createPrivateKey(server.keyPem)))
    })

    it('puts organizations and the common name into a client certificate subject', async function () {
      const client = await issueCertificate(ca, {
        commonName: 'ksctl-admin',
        organizations: ['system:masters', 'ksctl'],
        usage: 'client',
      })
      const certificate = new X509Certificate(client.certPem)
      assert.equal(certificate.subject, 'O=system:masters\nO=ksctl\nCN=ksctl-admin')
      assert.equal(certificate.issuer, 'CN=ksctl-test-ca')
      assert.equal(certificate.subjectAltName, undefined)
      assert.deepEqual(certificate.keyUsage, [clientAuthOid])
    })

    it('allows both usages at once', async function () {
      const both = await issueCertificate(ca, {commonName: 'tunnel', dnsNames: ['tunnel'], usage: 'both'})
      assert.deepEqual(new X509Certificate(both.certPem).keyUsage, [serverAuthOid, clientAuthOid])
    })

    it('defaults to one year and honours validityDays', async function () {
      const defaultValidity = await issueCertificate(ca, {commonName: 'a', usage: 'client'})
      const shortValidity = await issueCertificate(ca, {commonName: 'b', usage: 'client', validityDays: 2})
      assert.ok(Math.abs(validityDays(new X509Certificate(defaultValidity.certPem)) - 365) < 0.01)
      assert.ok(Math.abs(validityDays(new X509Certificate(shortValidity.certPem)) - 2) < 0.01)
    })

    it('accepts an explicit validity window, e.g. for an expired certificate', async function () {
      const notBefore = new Date(Date.now() - 3 * dayInMs)
      const notAfter = new Date(Date.now() - dayInMs)
      const expired = await issueCertificate(ca, {commonName: 'old', usage: 'client', notBefore, notAfter})
      const certificate = new X509Certificate(expired.certPem)
      assert.equal(certificate.validFromDate.getTime(), Math.floor(notBefore.getTime() / 1000) * 1000)
      assert.equal(certificate.validToDate.getTime(), Math.floor(notAfter.getTime() / 1000) * 1000)
    })

    it('rejects an empty validity window', async function () {
      const now = new Date()
      await assert.rejects(
        issueCertificate(ca, {commonName: 'x', usage: 'client', notBefore: now, notAfter: now}),
        /notAfter .* must be after notBefore/,
      )
      await assert.rejects(
        issueCertificate(ca, {commonName: 'x', usage: 'client', validityDays: 0}),
        /validityDays must be positive/,
      )
    })

    it('produces certificates that a TLS server accepts only while valid', async function () {
      const server = await issueCertificate(ca, {
        commonName: 's',
        ipAddresses: ['127.0.0.1'],
        usage: 'server',
      })
      const client = await issueCertificate(ca, {commonName: 'c', usage: 'client'})
      const expiredClient = await issueCertificate(ca, {
        commonName: 'c',
        usage: 'client',
        notBefore: new Date(Date.now() - 2 * dayInMs),
        notAfter: new Date(Date.now() - dayInMs),
      })
      assert.equal(await mutualTlsClientName(ca, server, client), 'c')
      await assert.rejects(mutualTlsClientName(ca, server, expiredClient))
    })
  })

  describe('generateKeyPairPem', function () {
    it('returns a PKCS#8 private key and the matching SPKI public key', function () {
      const {privateKeyPem, publicKeyPem} = generateKeyPairPem()
      assertPkcs8EcKey(privateKeyPem)
      assert.match(publicKeyPem, /^-----BEGIN PUBLIC KEY-----\n/)
      const signature = sign('sha256', Buffer.from('token'), privateKeyPem)
      assert.ok(verify('sha256', Buffer.from('token'), createPublicKey(publicKeyPem), signature))
    })
  })

  describe('renewal and kept keys', function () {
    it('certifies a given key, so that its pin stays when the certificate is issued again', async function () {
      const first = await issueCertificate(ca, {commonName: 'proxy', usage: 'server', dnsNames: ['a']})
      const again = await issueCertificate(ca, {
        commonName: 'proxy',
        usage: 'server',
        dnsNames: ['a', 'b'],
        keyPem: first.keyPem,
      })
      assert.equal(again.keyPem, first.keyPem)
      assert.notEqual(again.certPem, first.certPem)
      assert.equal(certificateFingerprint(again.certPem), certificateFingerprint(first.certPem))
      assert.equal(privateKeyFingerprint(first.keyPem), certificateFingerprint(first.certPem))
      assert.ok(certifiesKey(again.certPem, first.keyPem))
      assert.ok(!certifiesKey(again.certPem, generateKeyPairPem().privateKeyPem))
    })

    it('is due for renewal from two thirds of its validity on', async function () {
      const notBefore = new Date('2026-01-01T00:00:00Z')
      const notAfter = new Date('2026-01-31T00:00:00Z')
      const {certPem} = await issueCertificate(ca, {commonName: 'c', usage: 'client', notBefore, notAfter})
      assert.equal(renewalTime(certPem).toISOString(), '2026-01-21T00:00:00.000Z')
      assert.equal(renewalDue(certPem, new Date('2026-01-20T23:59:00Z')), false)
      assert.equal(renewalDue(certPem, new Date('2026-01-21T00:00:00Z')), true)
    })

    it('backdates a certificate of seconds by a tenth of its life, not five minutes', async function () {
      const {certPem} = await issueCertificate(ca, {
        commonName: 'c',
        usage: 'client',
        validityDays: 30 / 86_400,
      })
      const certificate = new X509Certificate(certPem)
      const lifeMs = certificate.validToDate.getTime() - certificate.validFromDate.getTime()
      assert.ok(lifeMs >= 32_000 && lifeMs <= 34_000, `life ${lifeMs} ms`)
      assert.ok(renewalTime(certPem).getTime() > Date.now() + 10_000)
    })

    it('tells the CA that issued a certificate, and the names it covers', async function () {
      const other = await createCertificateAuthority({commonName: 'other-ca', validityDays: 1})
      const {certPem} = await issueCertificate(ca, {
        commonName: 'proxy',
        usage: 'server',
        dnsNames: ['mc-a.kubesphere-system.svc'],
        ipAddresses: ['10.0.0.7'],
      })
      assert.ok(issuedBy(certPem, ca.certPem))
      assert.ok(!issuedBy(certPem, other.certPem))
      assert.ok(coversNames(certPem, ['mc-a.kubesphere-system.svc', '10.0.0.7']))
      assert.ok(!coversNames(certPem, ['10.0.0.8']))
      assert.ok(!coversNames(certPem, ['mc-a']))
    })
  })

  describe('certificateFingerprint', function () {
    it('is the SHA-256 of the public key info', async function () {
      const issued = await issueCertificate(ca, {commonName: 'pinned', usage: 'server'})
      const publicKeyDer = createPublicKey(issued.keyPem).export({type: 'spki', format: 'der'})
      const expected = `sha256:${createHash('sha256').update(publicKeyDer).digest('hex')}`
      assert.equal(certificateFingerprint(issued.certPem), expected)
      assert.match(expected, /^sha256:[0-9a-f]{64}$/)
      assert.notEqual(certificateFingerprint(ca.certPem), expected)
    })
  })

  describe('with openssl', function () {
    let dir: string

    before(async function () {
      const openssl = await execa('openssl', ['version'], {reject: false})
      if (openssl.exitCode !== 0) this.skip()
      dir = tempDir('ksctl-pki-')
    })

    it('verifies the chain and shows the expected extensions', async function () {
      const server = await issueCertificate(ca, {
        commonName: 'kube-apiserver',
        dnsNames: ['localhost'],
        ipAddresses: ['127.0.0.1'],
        usage: 'server',
      })
      const caFile = path.join(dir, 'ca.crt')
      const certFile = path.join(dir, 'server.crt')
      const keyFile = path.join(dir, 'server.key')
      await writeFile(caFile, ca.certPem)
      await writeFile(certFile, server.certPem)
      await writeFile(keyFile, server.keyPem)
      const caText = (await execa('openssl', ['x509', '-in', caFile, '-noout', '-text'])).stdout
      assert.match(caText, /X509v3 Basic Constraints: critical\s+CA:TRUE/)
      assert.match(caText, /X509v3 Key Usage: critical\s+Digital Signature, Certificate Sign, CRL Sign/)

      const verified = await execa('openssl', ['verify', '-CAfile', caFile, certFile])
      assert.equal(verified.stdout, `${certFile}: OK`)
      const text = (await execa('openssl', ['x509', '-in', certFile, '-noout', '-text'])).stdout
      assert.match(text, /Signature Algorithm: ecdsa-with-SHA256/)
      assert.match(text, /X509v3 Key Usage: critical\s+Digital Signature/)
      assert.match(text, /TLS Web Server Authentication/)
      assert.match(text, /DNS:localhost, IP Address:127\.0\.0\.1/)
      assert.match(text, /CA:FALSE/)
      await execa('openssl', ['pkey', '-in', keyFile, '-noout'])
    })
  })
})

/** Runs one mutual-TLS handshake and resolves with the client's common name as the server verified it. */
async function mutualTlsClientName(
  ca: CertificateAndKey,
  server: CertificateAndKey,
  client: CertificateAndKey,
): Promise<string> {
  const tlsServer = tls.createServer({
    cert: server.certPem,
    key: server.keyPem,
    ca: ca.certPem,
    requestCert: true,
    rejectUnauthorized: true,
  })
  const verdict = new Promise<string>((resolve, reject) => {
    tlsServer.on('secureConnection', (socket) => {
      resolve(String(socket.getPeerCertificate().subject.CN))
      socket.end()
    })
    tlsServer.on('tlsClientError', reject)
  })
  await new Promise<void>((resolve) => tlsServer.listen(0, '127.0.0.1', resolve))
  const address = tlsServer.address()
  assert.ok(address && typeof address === 'object')
  const socket = tls.connect({
    host: '127.0.0.1',
    port: address.port,
    ca: ca.certPem,
    cert: client.certPem,
    key: client.keyPem,
  })
  // With TLS 1.3 the client learns of a rejection only after its side of the handshake, so the server decides.
  socket.on('error', () => undefined)
  try {
    return await verdict
  } finally {
    socket.destroy()
    tlsServer.close()
  }
}
