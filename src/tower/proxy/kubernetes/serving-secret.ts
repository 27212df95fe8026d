import type {ClusterClient, DecodedSecret} from '../../../k8s/cluster-client.js'
import {isConflict} from '../../../k8s/api-errors.js'
import type {CertificateAndKey} from '../../../pki/certificates.js'
import {redactor} from '../../../redact.js'
import type {ServingKeyStore} from '../serving-key-store.js'

export const SERVING_SECRET = 'ksctl-tower-serving'

/**
 * Kubernetes mode keeps the serving key and certificate in Secret `namespace/ksctl-tower-serving` (type
 * kubernetes.io/tls), beside the CA Secret: every replica and every restart serves with the same key, so an
 * agent's `--proxy-pin` holds. When two replicas race to create it, the one written first wins, as for the CA.
 */
export class SecretServingKeyStore implements ServingKeyStore {
  readonly description: string
  private resourceVersion: string | undefined

  constructor(
    private readonly client: ClusterClient,
    private readonly namespace: string,
  ) {
    this.description = `secret ${namespace}/${SERVING_SECRET}`
  }

  async load(): Promise<CertificateAndKey | undefined> {
    const secret = await this.client.findSecret(this.namespace, SERVING_SECRET)
    return secret === undefined ? undefined : this.read(secret)
  }

  async create(serving: CertificateAndKey): Promise<CertificateAndKey> {
    try {
      const created = await this.client.createSecret(this.secret(serving))
      this.resourceVersion = created.metadata?.resourceVersion
      return serving
    } catch (error) {
      if (!isConflict(error) && !(error instanceof Error && /already exists/.test(error.message))) throw error
      const winner = await this.load()
      if (winner === undefined) throw error
      return winner
    }
  }

  /**
   * Writes the renewed certificate over the version last read. Another replica that renewed first wins (409): its
   * certificate is of the same key, and this one's is issued again at its next start.
   */
  async update(serving: CertificateAndKey): Promise<void> {
    try {
      const replaced = await this.client.replaceSecret(this.secret(serving, this.resourceVersion))
      this.resourceVersion = replaced.metadata?.resourceVersion
    } catch (error) {
      if (!isConflict(error)) throw error
      this.resourceVersion = (await this.client.findSecret(this.namespace, SERVING_SECRET))?.metadata
        ?.resourceVersion
    }
  }

  private read(secret: DecodedSecret): CertificateAndKey {
    const keyPem = secret.data['tls.key']
    if (keyPem === undefined || keyPem.trim() === '') {
      throw new Error(
        `${this.description} has no tls.key: delete it and the proxy makes a new serving key on its next start (agents that pin the old key must then be given the new pin)`,
      )
    }
    redactor.register(keyPem)
    this.resourceVersion = secret.metadata?.resourceVersion
    return {certPem: secret.data['tls.crt'] ?? '', keyPem}
  }

  private secret(serving: CertificateAndKey, resourceVersion?: string): DecodedSecret {
    return {
      metadata: {
        name: SERVING_SECRET,
        namespace: this.namespace,
        labels: {'app.kubernetes.io/managed-by': 'ksctl-tower'},
        ...(resourceVersion !== undefined && {resourceVersion}),
      },
      type: 'kubernetes.io/tls',
      data: {'tls.crt': serving.certPem, 'tls.key': serving.keyPem},
    }
  }
}
