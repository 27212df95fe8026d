import {isIP} from 'node:net'

import type {Logger} from '../../log.js'
import {
  certifiesKey,
  coversNames,
  generateKeyPairPem,
  issueCertificate,
  issuedBy,
  privateKeyFingerprint,
  renewalTime,
  type CertificateAndKey,
} from '../../pki/certificates.js'
import {redactor} from '../../redact.js'
import type {CurrentCa} from './current-ca.js'
import type {RegisteredCluster} from './registry.js'
import type {ServingKeyStore} from './serving-key-store.js'

export const DEFAULT_SERVING_VALIDITY_MS = 365 * 24 * 60 * 60 * 1000
/** setTimeout's longest wait; a renewal further away is re-armed when this one fires. */
const longestTimerMs = 2 ** 31 - 1

export interface ServingCertificatesOptions {
  ca: CurrentCa
  store: ServingKeyStore
  /** Names and addresses every serving certificate holds besides localhost and 127.0.0.1 (--server-name, listen hosts). */
  publishedNames: string[]
  validityMs?: number
  log: Logger
  now?: () => Date
}

interface Issued {
  serving: CertificateAndKey
  /** The CA certificate it was issued by. */
  caPem: string
  names: string[]
  renewAt: number
}

/**
 * The proxy's serving certificates, all of one kept key (so that a pin of it holds across restarts, replicas and
 * renewals): one for the path-routed front end and the agent listener, with the published names, and one per
 * cluster port whose cluster has addresses of its own (Service mc-NAME's ClusterIP and DNS names, which its issued
 * kubeconfig names), with the published names besides. A certificate is issued again when a name it lacks is
 * wanted, when two thirds of its validity have passed, and when the CA changed; the listeners then swap their TLS
 * context, so that new connections get the new certificate and open ones carry on.
 */
export class ServingCertificates {
  private shared: Issued
  private perCluster = new Map<string, Issued>()
  private clusters: RegisteredCluster[] = []
  private readonly listeners: (() => Promise<void>)[] = []
  private refreshing: Promise<void> = Promise.resolve()
  private timer: NodeJS.Timeout | undefined
  private closed = false

  private constructor(
    private readonly options: ServingCertificatesOptions,
    private readonly keyPem: string,
    shared: Issued,
  ) {
    this.shared = shared
    options.ca.onChange(() => this.refresh())
  }

  /** Reads the kept key (or makes and keeps one: the first replica to write it wins) and the shared certificate. */
  static async open(options: ServingCertificatesOptions): Promise<ServingCertificates> {
    const names = publishedNames(options.publishedNames)
    let kept = await options.store.load()
    if (kept === undefined) {
      const keyPem = generateKeyPairPem().privateKeyPem
      redactor.register(keyPem)
      const made = await issue(options, keyPem, names)
      kept = await options.store.create(made.serving)
      if (kept.keyPem === keyPem)
        options.log.info('created the serving key', {kept: options.store.description})
    }
    redactor.register(kept.keyPem)
    const shared = describe(kept, options.ca.current.certPem, names)
    const certificates = new ServingCertificates(options, kept.keyPem, shared)
    if (certificates.stale(shared, names)) {
      certificates.shared = await issue(options, kept.keyPem, names)
      await certificates.keep(certificates.shared)
    }
    certificates.arm()
    return certificates
  }

  /** `sha256:<hex>` of the serving key: what agents take as `--proxy-pin`. */
  get pin(): string {
    return privateKeyFingerprint(this.keyPem)
  }

  /** The CA that client certificates must chain to. */
  get caPem(): string {
    return this.options.ca.current.certPem
  }

  /** The serving certificate of a cluster's own port, or (no cluster, or none of its own) the shared one. */
  certificate(cluster?: string): CertificateAndKey {
    return ((cluster === undefined ? undefined : this.perCluster.get(cluster)) ?? this.shared).serving
  }

  /** Called after any certificate changed; a refresh ends when its listeners are done. */
  onChange(listener: () => Promise<void>): void {
    this.listeners.push(listener)
  }

  /**
   * Brings every certificate up to date for `clusters` (or the clusters of the last call): names, renewal, CA.
   * Calls are applied one at a time.
   */
  refresh(clusters?: RegisteredCluster[]): Promise<void> {
    if (clusters !== undefined) this.clusters = clusters
    this.refreshing = this.refreshing
      .then(() => this.update())
      .catch((error: unknown) => {
        this.options.log.error('cannot renew the serving certificates; trying again at the next change', {
          reason: error instanceof Error ? error.message : String(error),
        })
      })
    return this.refreshing
  }

  async close(): Promise<void> {
    this.closed = true
    clearTimeout(this.timer)
    await this.refreshing
  }

  private async update(): Promise<void> {
    if (this.closed) return
    const published = publishedNames(this.options.publishedNames)
    const changed: string[] = []
    if (this.stale(this.shared, published)) {
      this.shared = await issue(this.options, this.keyPem, published)
      await this.keep(this.shared)
      changed.push('shared')
    }
    const next = new Map<string, Issued>()
    for (const cluster of this.clusters) {
      const own = cluster.serverNames ?? []
      if (own.length === 0) continue
      const names = [...new Set([...published, ...own])]
      const current = this.perCluster.get(cluster.name)
      if (current !== undefined && !this.stale(current, names)) {
        next.set(cluster.name, current)
        continue
      }
      next.set(cluster.name, await issue(this.options, this.keyPem, names))
      changed.push(cluster.name)
    }
    const removed = [...this.perCluster.keys()].filter((name) => !next.has(name))
    this.perCluster = next
    this.arm()
    if (changed.length === 0 && removed.length === 0) return
    if (changed.length > 0) {
      this.options.log.info('issued serving certificates', {
        certificates: changed.length,
        clusters: changed.filter((name) => name !== 'shared').slice(0, 10),
      })
    }
    for (const listener of this.listeners) await listener()
  }

  /** Needs issuing again: another CA, two thirds of its validity gone, or a name missing. */
  private stale(issued: Issued, names: string[]): boolean {
    const now = this.now().getTime()
    const wanted = new Set(issued.names)
    return (
      issued.caPem.trim() !== this.options.ca.current.certPem.trim() ||
      now >= issued.renewAt ||
      !names.every((name) => wanted.has(name))
    )
  }

  /** Keeps a renewed shared certificate where the key is kept; a failure is logged (the key is kept already). */
  private async keep(shared: Issued): Promise<void> {
    try {
      await this.options.store.update(shared.serving)
    } catch (error) {
      this.options.log.warn(
        'cannot keep the renewed serving certificate; it is issued again at the next start',
        {
          kept: this.options.store.description,
          reason: error instanceof Error ? error.message : String(error),
        },
      )
    }
  }

  /** A timer for the earliest renewal. */
  private arm(): void {
    clearTimeout(this.timer)
    if (this.closed) return
    const renewAt = Math.min(
      this.shared.renewAt,
      ...[...this.perCluster.values()].map((issued) => issued.renewAt),
    )
    const delay = Math.max(0, Math.min(renewAt - this.now().getTime(), longestTimerMs))
    this.timer = setTimeout(() => void this.refresh(), delay)
    this.timer.unref()
  }

  private now(): Date {
    return this.options.now?.() ?? new Date()
  }
}

async function issue(options: ServingCertificatesOptions, keyPem: string, names: string[]): Promise<Issued> {
  const ca = options.ca.current
  const ipAddresses = names.filter((name) => isIP(name) !== 0)
  const dnsNames = names.filter((name) => isIP(name) === 0)
  const serving = await issueCertificate(ca, {
    commonName: 'ksctl-tower-proxy',
    dnsNames,
    ipAddresses,
    usage: 'server',
    validityDays: (options.validityMs ?? DEFAULT_SERVING_VALIDITY_MS) / 86_400_000,
    keyPem,
  })
  return {serving, caPem: ca.certPem, names, renewAt: renewalTime(serving.certPem).getTime()}
}

/** What a kept certificate is good for; one that is unreadable, of another key or of another CA is issued again. */
function describe(kept: CertificateAndKey, caPem: string, names: string[]): Issued {
  try {
    if (!certifiesKey(kept.certPem, kept.keyPem) || !issuedBy(kept.certPem, caPem)) throw new Error('stale')
    const covered = coversNames(kept.certPem, names) ? names : []
    return {serving: kept, caPem, names: covered, renewAt: renewalTime(kept.certPem).getTime()}
  } catch {
    return {serving: kept, caPem: '', names: [], renewAt: 0}
  }
}

/** localhost, 127.0.0.1 and the given names, without the unspecified addresses a listener may bind to. */
export function publishedNames(names: string[]): string[] {
  return [
    ...new Set(['localhost', '127.0.0.1', ...names.filter((name) => name !== '0.0.0.0' && name !== '::')]),
  ]
}
