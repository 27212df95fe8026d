import {
  createCertificateAuthority,
  issueCertificate,
  type CertificateAndKey,
} from '../../src/pki/certificates.js'

export interface LoopbackPki {
  ca: CertificateAndKey
  /** Serving certificate for 127.0.0.1 and localhost, signed by `ca`. */
  server: CertificateAndKey
}

const cache = new Map<string, Promise<LoopbackPki>>()

/** A CA and a loopback serving certificate, made once per name and test process (key generation is slow). */
export function loopbackPki(name = 'default'): Promise<LoopbackPki> {
  let pki = cache.get(name)
  if (pki === undefined) {
    pki = (async () => {
      const ca = await createCertificateAuthority({commonName: `ksctl-test-${name}-ca`, validityDays: 2})
      const server = await issueCertificate(ca, {
        commonName: '127.0.0.1',
        dnsNames: ['localhost'],
        ipAddresses: ['127.0.0.1'],
        usage: 'server',
        validityDays: 2,
      })
      return {ca, server}
    })()
    cache.set(name, pki)
  }
  return pki
}
