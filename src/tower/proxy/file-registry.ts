import {readFile} from 'node:fs/promises'

import {load} from 'js-yaml'

import {invalidInput} from '../../errors.js'
import {redactor} from '../../redact.js'
import type {AgentPresence, ClusterRegistry, RegisteredCluster} from './registry.js'

const clusterNamePattern = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/
const minimumTokenLength = 16
const allowedKeys = new Set(['name', 'token', 'nextToken', 'kubernetesPort', 'kubespherePort'])

/**
 * Parses the standalone clusters file: a YAML list of {name, token, nextToken?, kubernetesPort?, kubespherePort?}.
 * `nextToken` rotates a token by hand: agents may connect with either until `token` is replaced by it (SIGHUP
 * after each edit). Every token is registered with the redactor before anything can fail, and no message quotes
 * a token.
 */
export function parseClustersFile(text: string, source: string): RegisteredCluster[] {
  if (text.trim() === '') return []
  let document: unknown
  try {
    document = load(text)
  } catch {
    // The YAML error quotes the offending line, which may hold a token.
    throw invalidInput(`${source} is not valid YAML`)
  }
  if (document === null || document === undefined) return []
  if (!Array.isArray(document)) throw invalidInput(`${source} must be a YAML list of clusters`)
  for (const entry of document) {
    if (isRecord(entry)) {
      redactor.register(entry.token)
      redactor.register(entry.nextToken)
    }
  }
  const clusters = document.map((entry: unknown, index) => parseEntry(entry, `${source}[${index}]`))
  requireUnique(
    clusters.map((cluster) => cluster.name),
    source,
    'cluster name',
  )
  requireUnique(
    clusters.flatMap((cluster) => [cluster.kubernetesPort, cluster.kubespherePort]).filter(isDefined),
    source,
    'port',
  )
  return clusters
}

function parseEntry(entry: unknown, where: string): RegisteredCluster {
  if (!isRecord(entry)) throw invalidInput(`${where} must be a mapping with name and token`)
  const unknownKeys = Object.keys(entry).filter((key) => !allowedKeys.has(key))
  if (unknownKeys.length > 0) throw invalidInput(`${where} has unknown keys: ${unknownKeys.join(', ')}`)
  const {name, token} = entry
  if (typeof name !== 'string' || !clusterNamePattern.test(name)) {
    throw invalidInput(`${where}.name must be a DNS label (lowercase letters, digits and '-')`)
  }
  if (typeof token !== 'string' || token.length < minimumTokenLength) {
    throw invalidInput(
      `${where}.token of cluster ${name} must be a string of at least ${minimumTokenLength} characters`,
    )
  }
  const {nextToken} = entry
  if (nextToken !== undefined && (typeof nextToken !== 'string' || nextToken.length < minimumTokenLength)) {
    throw invalidInput(
      `${where}.nextToken of cluster ${name} must be a string of at least ${minimumTokenLength} characters`,
    )
  }
  return {
    name,
    token,
    ...(nextToken !== undefined && nextToken !== token && {nextToken}),
    kubernetesPort: parsePort(entry.kubernetesPort, `${where}.kubernetesPort`),
    kubespherePort: parsePort(entry.kubespherePort, `${where}.kubespherePort`),
  }
}

function parsePort(value: unknown, where: string): number | undefined {
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535) {
    throw invalidInput(`${where} must be a port number from 1 to 65535`)
  }
  return value
}

function requireUnique(values: (string | number)[], source: string, what: string): void {
  const seen = new Set<string | number>()
  for (const value of values) {
    if (seen.has(value)) throw invalidInput(`${source}: ${what} ${String(value)} appears twice`)
    seen.add(value)
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function isDefined<T>(value: T | undefined): value is T {
  return value !== undefined
}

/** Standalone mode's registry: the clusters of a file, re-read on `reload()` (the proxy command calls it on SIGHUP). */
export class FileClusterRegistry implements ClusterRegistry {
  private clusters = new Map<string, RegisteredCluster>()
  private readonly listeners: (() => void)[] = []
  private readonly presence = new Map<string, number>()

  private constructor(private readonly path: string) {}

  static async open(path: string): Promise<FileClusterRegistry> {
    const registry = new FileClusterRegistry(path)
    await registry.reload()
    return registry
  }

  /** Re-reads the file; on bad input the previous clusters stay and the error is thrown. */
  async reload(): Promise<void> {
    let text: string
    try {
      text = await readFile(this.path, 'utf8')
    } catch (error) {
      const reason = error instanceof Error && 'code' in error ? String(error.code) : 'unreadable'
      throw invalidInput(`cannot read --clusters ${this.path}: ${reason}`)
    }
    const clusters = parseClustersFile(text, this.path)
    this.clusters = new Map(clusters.map((cluster) => [cluster.name, cluster]))
    for (const listener of this.listeners) listener()
  }

  list(): RegisteredCluster[] {
    return [...this.clusters.values()]
  }

  get(name: string): RegisteredCluster | undefined {
    return this.clusters.get(name)
  }

  onChange(listener: () => void): void {
    this.listeners.push(listener)
  }

  agentConnected(name: string, presence: AgentPresence): void {
    this.presence.set(name, presence.sessions)
  }

  agentDisconnected(name: string, presence: AgentPresence): void {
    this.presence.set(name, presence.sessions)
  }

  /** Live sessions per cluster as last reported; standalone mode has no status object to write it to. */
  sessions(name: string): number {
    return this.presence.get(name) ?? 0
  }

  /** Standalone mode has no object to report a problem on: the proxy's log line is the report. */
  problem(): void {
    // Nothing to write to.
  }

  close(): Promise<void> {
    return Promise.resolve()
  }
}
