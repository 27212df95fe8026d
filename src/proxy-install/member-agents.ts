import {load} from 'js-yaml'

import {KsctlError} from '../errors.js'
import type {ClusterClient} from '../k8s/cluster-client.js'
import type {DryRun} from '../k8s/dry-run.js'
import type {EditOutcome} from '../k8s/object-edit.js'
import type {KubeSphereCluster} from '../kubesphere/cluster-object.js'
import {issuedBy} from '../pki/certificates.js'
import {isProxyCluster} from '../tower/proxy/kubernetes/cluster-reconcile.js'

/** Whose agent a proxy Cluster has, as the host sees it. */
export type AgentRuntime = 'tower' | 'ksctl' | 'none'

export interface ProxyClusterAgent {
  name: string
  agent: AgentRuntime
  /** Why it is taken for that runtime, in the user's words. */
  because: string
}

/**
 * Whose agent each proxy Cluster has, from the kubeconfig in it: every proxy issues one at its agent's connection
 * (Tower at each one, `Update` in TOWER pkg/proxy/proxy.go; ksctl's proxy at the first, and again when due), so a
 * kubeconfig whose client certificate ksctl's CA did not issue came from Tower, and a Cluster without one has never
 * had an agent connected. A kubeconfig that cannot be read is taken for Tower's: the safe side, since it stops the
 * install rather than cutting a member off. Without `ksctlCaPem` (no ksctl CA yet) every kubeconfig is Tower's.
 */
export function proxyClusterAgents(
  clusters: KubeSphereCluster[],
  ksctlCaPem: string | undefined,
): ProxyClusterAgent[] {
  return clusters
    .filter(isProxyCluster)
    .map((cluster): ProxyClusterAgent => {
      const name = cluster.metadata?.name ?? ''
      const kubeconfig = cluster.spec?.connection?.kubeconfig ?? ''
      if (kubeconfig === '')
        return {name, agent: 'none', because: 'no agent has connected yet (no kubeconfig)'}
      const certificate = clientCertificate(kubeconfig)
      if (certificate === undefined)
        return {name, agent: 'tower', because: 'its kubeconfig has no client certificate ksctl can read'}
      if (ksctlCaPem !== undefined && issuedByOrFalse(certificate, ksctlCaPem))
        return {name, agent: 'ksctl', because: "its kubeconfig was issued by ksctl's proxy CA"}
      return {name, agent: 'tower', because: "its kubeconfig was issued by another CA than ksctl's (Tower's)"}
    })
    .sort((a, b) => a.name.localeCompare(b.name))
}

function clientCertificate(base64: string): string | undefined {
  try {
    const document = load(Buffer.from(base64, 'base64').toString('utf8')) as {
      users?: {user?: {'client-certificate-data'?: unknown}}[]
    }
    const data = document.users?.[0]?.user?.['client-certificate-data']
    return typeof data === 'string' ? Buffer.from(data, 'base64').toString('utf8') : undefined
  } catch {
    return undefined
  }
}

function issuedByOrFalse(certificatePem: string, caPem: string): boolean {
  try {
    return issuedBy(certificatePem, caPem)
  } catch {
    return false
  }
}

/**
 * Phase "migrate members" of `ksctl proxy install`: the members whose agent is Tower's get ksctl's agent, applied
 * through the tunnel that still works (Tower's, with the Cluster's kubeconfig), before Tower's proxy stops. `check`
 * runs before any write and throws (nothing changed) for a member that cannot be migrated; `migrate` runs after
 * ksctl's proxy objects exist and before Tower's Deployment is scaled down, and returns its changes and its undo
 * (called, in reverse order with the install's other steps, when a later step fails).
 */
export interface MemberMigration {
  check(host: ClusterClient, members: ProxyClusterAgent[]): Promise<void>
  migrate(
    host: ClusterClient,
    members: ProxyClusterAgent[],
    dryRun: DryRun,
  ): Promise<{changes: EditOutcome[]; undo: () => Promise<void>}>
}

/**
 * Until the migration lands (src/kubesphere/runtime-migration.ts): members on Tower's agent stop the install, which
 * changes nothing and names them with what to do.
 */
export const refuseMigration: MemberMigration = {
  check(host, members) {
    if (members.length === 0) return Promise.resolve()
    const names = members.map((member) => member.name)
    return Promise.reject(
      new KsctlError(
        `${String(members.length)} proxy cluster(s) on context "${host.context}" run Tower's agent, which cannot ` +
          `reach ksctl's proxy: ${members.map((member) => `${member.name} (${member.because})`).join('; ')}; nothing was changed`,
        {
          code: 'PRECONDITION_FAILED',
          context: host.context,
          object: {resource: 'clusters.cluster.kubesphere.io', name: names[0] ?? ''},
          suggestions: [
            "this ksctl cannot move members to ksctl's agent yet; for each of them, either take it off the host first: " +
              `ksctl member leave ${names[0] ?? 'NAME'} --host-context ${host.context} --member-context MEMBER`,
            "or leave Tower in place; members joined after the install run ksctl's agent: ksctl member join NAME --runtime ksctl",
          ],
        },
      ),
    )
  },
  migrate() {
    return Promise.resolve({changes: [], undo: () => Promise.resolve()})
  },
}
