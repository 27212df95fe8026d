import {isIP} from 'node:net'

import type {ManifestObject} from '../k8s/manifest-objects.js'
import {
  createCertificateAuthority,
  generateKeyPairPem,
  issueCertificate,
  privateKeyFingerprint,
  type CertificateAndKey,
} from '../pki/certificates.js'
import {redactor} from '../redact.js'
import {PROXY_CA_SECRET} from '../tower/proxy/kubernetes/proxy-ca.js'
import {SERVING_SECRET} from '../tower/proxy/kubernetes/serving-secret.js'
import {publishedNames} from '../tower/proxy/serving-certificates.js'
import {NAMESPACE} from './names.js'

/** As the proxy's Kubernetes mode labels the Secrets it writes (proxy-ca.ts, serving-secret.ts). */
const PROXY_SECRET_LABELS = {'app.kubernetes.io/managed-by': 'ksctl-tower'}
const CA_VALIDITY_DAYS = 3650
const SERVING_VALIDITY_DAYS = 365

/** The proxy's CA and kept serving key as new Secrets, and what may be shown of them. */
export interface ProxySecrets {
  ca: ManifestObject
  serving: ManifestObject
  caPem: string
  /** `sha256:<hex>` of the serving key: what agents take as `--proxy-pin`. */
  servingPin: string
}

/**
 * A new proxy CA and serving key, in the Secrets Kubernetes mode reads (type kubernetes.io/tls, `tls.crt` and
 * `tls.key`): the CA as `ksctl tower proxy` would make it on its first start (ECDSA P-256, 10 years), the serving key
 * certified by it for the names the proxy will be started with, so that it starts without issuing again.
 */
export async function newProxySecrets(serverNames: string[]): Promise<ProxySecrets> {
  const ca = await createCertificateAuthority({commonName: 'ksctl-tower-ca', validityDays: CA_VALIDITY_DAYS})
  redactor.register(ca.keyPem)
  const keyPem = generateKeyPairPem().privateKeyPem
  redactor.register(keyPem)
  const names = publishedNames(serverNames)
  const serving = await issueCertificate(ca, {
    commonName: 'ksctl-tower-proxy',
    dnsNames: names.filter((name) => !isAddress(name)),
    ipAddresses: names.filter(isAddress),
    usage: 'server',
    validityDays: SERVING_VALIDITY_DAYS,
    keyPem,
  })
  return {
    ca: tlsSecret(PROXY_CA_SECRET, ca),
    serving: tlsSecret(SERVING_SECRET, serving),
    caPem: ca.certPem,
    servingPin: privateKeyFingerprint(keyPem),
  }
}

function tlsSecret(name: string, pair: CertificateAndKey): ManifestObject {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {name, namespace: NAMESPACE, labels: {...PROXY_SECRET_LABELS}},
    type: 'kubernetes.io/tls',
    stringData: {'tls.crt': pair.certPem, 'tls.key': pair.keyPem},
  }
}

function isAddress(name: string): boolean {
  return isIP(name) !== 0
}
