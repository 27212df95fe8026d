import type {CertificateAndKey} from '../../pki/certificates.js'
import {redactor} from '../../redact.js'

/**
 * The proxy CA as it is now. Kubernetes mode reads it again on every reconcile (`refresh`), so that a CA rotated
 * in its Secret is picked up by a running proxy: the issued kubeconfigs and the serving certificates are then
 * issued again from the new CA, and the front ends trust client certificates of the new CA only.
 */
export class CurrentCa {
  private ca: CertificateAndKey
  private readonly listeners: ((ca: CertificateAndKey) => Promise<void>)[] = []

  constructor(
    initial: CertificateAndKey,
    private readonly reload?: () => Promise<CertificateAndKey>,
  ) {
    redactor.register(initial.keyPem)
    this.ca = initial
  }

  get current(): CertificateAndKey {
    return this.ca
  }

  /** Reads the CA from its source again; true when its certificate changed (the listeners were told). */
  async refresh(): Promise<boolean> {
    if (this.reload === undefined) return false
    return this.replace(await this.reload())
  }

  /**
   * Takes `next` when it differs from the current CA; true when it did. Resolves once the listeners are done: the
   * proxy serves and trusts the new CA before a kubeconfig of it is written, since KubeSphere's Cluster webhook
   * tries a new kubeconfig against the member (through this proxy) before it lets the Cluster change.
   */
  async replace(next: CertificateAndKey): Promise<boolean> {
    if (next.certPem.trim() === this.ca.certPem.trim() && next.keyPem.trim() === this.ca.keyPem.trim()) {
      return false
    }
    redactor.register(next.keyPem)
    this.ca = next
    for (const listener of this.listeners) await listener(next)
    return true
  }

  onChange(listener: (ca: CertificateAndKey) => Promise<void>): void {
    this.listeners.push(listener)
  }
}

/** A CA given as a pair is one that never changes while the process runs. */
export function currentCa(ca: CertificateAndKey | CurrentCa): CurrentCa {
  return ca instanceof CurrentCa ? ca : new CurrentCa(ca)
}
