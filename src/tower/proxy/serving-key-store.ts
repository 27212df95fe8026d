import {existsSync} from 'node:fs'
import {mkdir, readFile} from 'node:fs/promises'
import {join} from 'node:path'

import {invalidInput} from '../../errors.js'
import type {CertificateAndKey} from '../../pki/certificates.js'
import {writePrivateFile} from '../../private-file.js'
import {redactor} from '../../redact.js'

/**
 * Where the proxy keeps its serving key and certificate, so that the key (and so an agent's `--proxy-pin`) is the
 * same after a restart and on every replica. The certificate is renewed around the key; the key never changes.
 */
export interface ServingKeyStore {
  /** What is kept, or undefined when nothing is yet. */
  load(): Promise<CertificateAndKey | undefined>
  /** Keeps `serving` unless something is kept already; returns what is kept (the first written wins). */
  create(serving: CertificateAndKey): Promise<CertificateAndKey>
  /** Keeps a renewed certificate of the same key. */
  update(serving: CertificateAndKey): Promise<void>
  /** Where it is kept, for logs and errors. */
  readonly description: string
}

/** Without a place to keep it (standalone mode without --state-dir), the key lives as long as the process. */
export class MemoryServingKeyStore implements ServingKeyStore {
  readonly description = 'memory (a new serving key at every start)'
  private kept: CertificateAndKey | undefined

  load(): Promise<CertificateAndKey | undefined> {
    return Promise.resolve(this.kept)
  }

  create(serving: CertificateAndKey): Promise<CertificateAndKey> {
    this.kept ??= serving
    return Promise.resolve(this.kept)
  }

  update(serving: CertificateAndKey): Promise<void> {
    this.kept = serving
    return Promise.resolve()
  }
}

export const servingCertFile = 'serving.crt'
export const servingKeyFile = 'serving.key'

/** Standalone mode with --state-dir: `serving.key` (mode 0600) and `serving.crt` beside the proxy CA. */
export class FileServingKeyStore implements ServingKeyStore {
  readonly description: string

  constructor(private readonly stateDir: string) {
    this.description = `--state-dir ${stateDir}`
  }

  async load(): Promise<CertificateAndKey | undefined> {
    const certPath = join(this.stateDir, servingCertFile)
    const keyPath = join(this.stateDir, servingKeyFile)
    if (!existsSync(keyPath)) return undefined
    try {
      const keyPem = await readFile(keyPath, 'utf8')
      redactor.register(keyPem)
      // A missing certificate is issued again around the kept key.
      const certPem = existsSync(certPath) ? await readFile(certPath, 'utf8') : ''
      return {certPem, keyPem}
    } catch {
      throw invalidInput(`cannot read the serving key in --state-dir ${this.stateDir}`)
    }
  }

  async create(serving: CertificateAndKey): Promise<CertificateAndKey> {
    const kept = await this.load()
    if (kept !== undefined) return kept
    await mkdir(this.stateDir, {recursive: true, mode: 0o700})
    writePrivateFile(join(this.stateDir, servingKeyFile), serving.keyPem, '--state-dir')
    writePrivateFile(join(this.stateDir, servingCertFile), serving.certPem, '--state-dir')
    return serving
  }

  update(serving: CertificateAndKey): Promise<void> {
    writePrivateFile(join(this.stateDir, servingCertFile), serving.certPem, '--state-dir')
    return Promise.resolve()
  }
}
