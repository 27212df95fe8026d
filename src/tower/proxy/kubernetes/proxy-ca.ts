import type {ClusterClient} from '../../../k8s/cluster-client.js'
import {isConflict} from '../../../k8s/api-errors.js'
import type {Logger} from '../../../log.js'
import {createCertificateAuthority, type CertificateAndKey} from '../../../pki/certificates.js'
import {redactor} from '../../../redact.js'

export const PROXY_CA_SECRET = 'ksctl-tower-ca'
const CA_VALIDITY_DAYS = 3650

/**
 * Kubernetes mode's CA: read from Secret `namespace/ksctl-tower-ca` (type kubernetes.io/tls), or made on
 * the first start and stored there, so that every replica and every restart signs with the same CA and
 * no key ever ships with ksctl. When two replicas race, the Secret that was written first wins.
 */
export async function loadOrCreateProxyCa(
  client: ClusterClient,
  namespace: string,
  log: Logger,
): Promise<CertificateAndKey> {
  const existing = await client.findSecret(namespace, PROXY_CA_SECRET)
  if (existing !== undefined) return fromSecret(existing.data)
  const ca = await createCertificateAuthority({commonName: 'ksctl-tower-ca', validityDays: CA_VALIDITY_DAYS})
  redactor.register(ca.keyPem)
  try {
    await client.createSecret({
      metadata: {name: PROXY_CA_SECRET, namespace, labels: {'app.kubernetes.io/managed-by': 'ksctl-tower'}},
      type: 'kubernetes.io/tls',
      data: {'tls.crt': ca.certPem, 'tls.key': ca.keyPem},
    })
    log.info(`created the proxy CA in secret ${namespace}/${PROXY_CA_SECRET}`)
    return ca
  } catch (error) {
    if (!isConflict(error) && !(error instanceof Error && /already exists/.test(error.message))) throw error
    const winner = await client.findSecret(namespace, PROXY_CA_SECRET)
    if (winner === undefined) throw error
    return fromSecret(winner.data)
  }
}

/**
 * The CA as its Secret holds it now, for a running proxy to notice a rotation (someone replaced tls.crt and
 * tls.key). A Secret that is gone or incomplete is an error: the proxy then keeps the CA it has.
 */
export async function readProxyCa(client: ClusterClient, namespace: string): Promise<CertificateAndKey> {
  const secret = await client.findSecret(namespace, PROXY_CA_SECRET)
  if (secret === undefined) {
    throw new Error(
      `secret ${namespace}/${PROXY_CA_SECRET} is gone: the proxy keeps its CA until it restarts, and then makes a new one`,
    )
  }
  return fromSecret(secret.data)
}

function fromSecret(data: Record<string, string>): CertificateAndKey {
  const certPem = data['tls.crt']
  const keyPem = data['tls.key']
  if (certPem === undefined || keyPem === undefined) {
    throw new Error(`secret ${PROXY_CA_SECRET} has no tls.crt and tls.key`)
  }
  return {certPem, keyPem}
}
